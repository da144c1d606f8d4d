package engine

import (
	"time"

	"github.com/vserve/vserve/scheduler"
)

// This file holds the engine's hook types, the seam through which tracing
// and metrics observe the engine. Every hook is called synchronously on the
// engine goroutine: it must be fast, must not block and must not call back
// into the engine. A nil hook is skipped.

// StepRecord is the timing and shape of one engine step, reported once the
// step's outputs have been applied. Durations are measured with the
// monotonic clock.
type StepRecord struct {
	Step  uint64    // the scheduler step (Output.Step)
	Start time.Time // when Schedule was called
	End   time.Time // when the outputs had been published

	Schedule time.Duration // scheduler.Schedule
	Prepare  time.Duration // runner: building the flat inputs (RunnerOutput.Timing)
	Forward  time.Duration // runner: model forward
	Sample   time.Duration // runner: sampling
	Execute  time.Duration // the whole Executor.Execute call (>= Prepare+Forward+Sample)
	Update   time.Duration // scheduler.Update and publishing to the streams

	NumScheduledTokens int // Output.TotalNumScheduledTokens
	NumNewRequests     int // first schedules and resumptions via NewRequests
	NumCachedRequests  int // requests continuing from the previous step
	NumPreempted       int
	NumFinished        int // requests that finished or were aborted in this step

	Stats scheduler.Stats // scheduler statistics after the step

	// Outputs are the per-request deltas of this step. The slice is only
	// valid during the hook call.
	Outputs []scheduler.RequestOutput
	// Err is the executor's error when the step failed (its requests were
	// finished with FinishError).
	Err error
}

// RequestTimes are the timestamps of one request's life in the engine (zero
// when the event did not happen).
type RequestTimes struct {
	Arrival    time.Time // Add was called
	Scheduled  time.Time // first scheduled (left the waiting queue)
	FirstToken time.Time // first output token published
	LastToken  time.Time // last output token published
	Finished   time.Time // finished, aborted or rejected
}

// QueueTime is the time spent waiting before the first schedule.
func (t RequestTimes) QueueTime() time.Duration { return sub(t.Scheduled, t.Arrival) }

// TTFT is the time from arrival to the first output token.
func (t RequestTimes) TTFT() time.Duration { return sub(t.FirstToken, t.Arrival) }

// E2E is the time from arrival to the end.
func (t RequestTimes) E2E() time.Duration { return sub(t.Finished, t.Arrival) }

// Prefill is the time from the first schedule to the first token.
func (t RequestTimes) Prefill() time.Duration { return sub(t.FirstToken, t.Scheduled) }

// Decode is the time from the first token to the last one.
func (t RequestTimes) Decode() time.Duration { return sub(t.LastToken, t.FirstToken) }

// Inference is the time from the first schedule to the last token.
func (t RequestTimes) Inference() time.Duration { return sub(t.LastToken, t.Scheduled) }

func sub(a, b time.Time) time.Duration {
	if a.IsZero() || b.IsZero() {
		return 0
	}
	return a.Sub(b)
}

// RequestStart describes a request accepted by the engine; it is reported
// before the scheduler sees the request, so an Observer's Queued event for
// the same id always follows it.
type RequestStart struct {
	ID              string
	TraceHeaders    map[string]string // opaque to the engine (W3C traceparent, journey flags)
	NumPromptTokens int
	MaxTokens       int
	Arrival         time.Time
}

// RequestEnd describes a request that left the engine, for whatever reason
// (finished, aborted, failed, shut down). It is reported exactly once for
// every RequestStart.
type RequestEnd struct {
	ID              string
	TraceHeaders    map[string]string
	Reason          scheduler.FinishReason
	AbortCause      string // for FinishAbort: client_disconnect, timeout, shutdown, ...; stop_string for a stop string
	NumPromptTokens int
	NumOutputTokens int
	NumCachedTokens int
	MaxTokens       int
	NumPreemptions  int
	Times           RequestTimes
	// ObserverState is what OnRequestStart returned for the request.
	ObserverState any
	// Stats are the scheduler statistics once the request's resources were
	// freed (as Snapshot shows them), so that gauges follow requests that
	// end between steps (aborts, timeouts), not only at the next step.
	Stats scheduler.Stats
}

// Abort causes passed to Abort and reported in RequestEnd.AbortCause.
const (
	CauseClientDisconnect = "client_disconnect"
	CauseStopString       = "stop_string"
	CauseTimeout          = "timeout"
	CauseShutdown         = "shutdown"
	CauseError            = "generation_error"
)

// Hooks are the optional observation points of the engine, set in Config.
type Hooks struct {
	// Observer receives the scheduler's events (journey and step tracing).
	Observer scheduler.Observer
	// OnStep is called after every step that scheduled work.
	OnStep func(*StepRecord)
	// OnRequestStart is called when a request is accepted. What it returns
	// (nil for nothing) is the request's observer state: the scheduler
	// hands it back to the Observer (scheduler.RequestView.ObserverState)
	// and the engine to OnRequestEnd (RequestEnd.ObserverState), so that
	// the hooks find their per-request state without a lookup by id.
	OnRequestStart func(RequestStart) (observerState any)
	// OnRequestEnd is called exactly once per accepted request when it ends.
	OnRequestEnd func(RequestEnd)
}
