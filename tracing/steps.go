package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/vserve/vserve/scheduler"
)

// stepTracer implements step tracing: two-stage sampled step.BATCH_SUMMARY
// and step.REQUEST_SNAPSHOT events on scheduler_steps_<k> window spans.
//
// The events of a sampled step are built at the end of Schedule (their
// timestamps are taken there) and held until the engine reports the step's
// timing, so the summary also carries device.forward_us, device.sample_us
// and runner.prepare_us: scheduler time and device time of the same step
// side by side in one event. At most maxPendingSteps steps wait (an engine
// may schedule step N+1 before step N's timing arrives); a step whose timing
// never comes (it scheduled nothing) is emitted without it once a later
// step's timing arrives, when too many wait, or at shutdown. Events are
// always emitted in step order.
type stepTracer struct {
	tracer     trace.Tracer
	sampler    StepSampler
	rich       StepSampler
	interval   uint64
	eventLimit int
	log        *slog.Logger

	mu       sync.Mutex
	disabled bool
	win      *stepWindow
	seq      int64
	pending  []*pendingStep // oldest first, at most maxPendingSteps
}

// maxPendingSteps bounds the sampled steps waiting for their timing.
const maxPendingSteps = 4

// stepWindow is the open scheduler_steps_<k> span.
type stepWindow struct {
	span   trace.Span
	start  uint64
	last   uint64
	events int
}

// pendingStep holds a sampled step's events until its timing arrives.
type pendingStep struct {
	step      uint64
	at        time.Time
	summary   []attribute.KeyValue
	snapshots [][]attribute.KeyValue
}

func newStepTracer(tp trace.TracerProvider, c Config) *stepTracer {
	return &stepTracer{
		tracer:     tp.Tracer(ScopeStep),
		sampler:    c.StepSampler,
		rich:       c.RichSampler,
		interval:   uint64(c.StepClosureInterval),
		eventLimit: c.MaxEventsPerSpan,
		log:        c.Logger,
	}
}

// stepBuilt is called at the end of Schedule.
func (s *stepTracer) stepBuilt(out *scheduler.Output, v scheduler.StepView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disabled {
		return
	}
	step := out.Step
	if !s.sampler.SampleStep(step) {
		if len(s.pending) == 0 {
			s.closeIfDueLocked(step)
		}
		return
	}
	if len(s.pending) == maxPendingSteps {
		s.flushLocked(s.pending[0].step)
	}
	s.pending = append(s.pending, buildStep(out, v, s.rich.SampleStep(step)))
}

// buildStep computes the summary and, when rich, the snapshots: one pass
// over the running requests, O(1) per request.
func buildStep(out *scheduler.Output, v scheduler.StepView, rich bool) *pendingStep {
	now := time.Now()
	start := v.StartTime()
	p := &pendingStep{step: out.Step, at: now}
	var snapAttrs []attribute.KeyValue // every snapshot's attributes, one allocation
	if rich {
		snapAttrs = make([]attribute.KeyValue, 0, v.NumRunning()*snapshotAttrs)
		p.snapshots = make([][]attribute.KeyValue, 0, v.NumRunning())
	}
	var prefillReqs, decodeReqs, prefillTokens, decodeTokens int
	v.Running(func(r scheduler.RequestView, scheduled, computedBefore int) {
		decode := r.NumOutputTokens() > 0
		if scheduled > 0 {
			if decode {
				decodeReqs++
				decodeTokens += scheduled
			} else {
				prefillReqs++
				prefillTokens += scheduled
			}
		}
		if rich {
			n := len(snapAttrs)
			snapAttrs = appendSnapshotAttributes(snapAttrs, out.Step, r, scheduled, computedBefore, decode)
			p.snapshots = append(p.snapshots, snapAttrs[n:len(snapAttrs):len(snapAttrs)])
		}
	})
	p.summary = make([]attribute.KeyValue, 0, summaryAttrs)
	p.summary = append(p.summary,
		attribute.Int64(AttrStepID, int64(out.Step)),
		attribute.Int64(AttrStepTSStartNS, monotonicNS(start)),
		attribute.Int64(AttrStepTSEndNS, monotonicNS(now)),
		attribute.Int64(AttrStepDurationUS, now.Sub(start).Microseconds()),
		attribute.Int(AttrQueueRunningDepth, v.NumRunning()),
		attribute.Int(AttrQueueWaitingDepth, v.NumWaiting()),
		attribute.Int(AttrBatchNumPrefill, prefillReqs),
		attribute.Int(AttrBatchNumDecode, decodeReqs),
		attribute.Int(AttrBatchScheduledTok, out.TotalNumScheduledTokens),
		attribute.Int(AttrBatchPrefillTokens, prefillTokens),
		attribute.Int(AttrBatchDecodeTokens, decodeTokens),
		attribute.Int(AttrBatchNumFinished, v.NumFinishedSincePrevStep()),
		attribute.Int(AttrBatchNumPreempted, len(out.PreemptedRequestIDs)),
		attribute.Float64(AttrKVUsageGPURatio, v.KVUsage()),
		attribute.Int(AttrKVBlocksTotalGPU, v.KVBlocksTotal()),
		attribute.Int(AttrKVBlocksFreeGPU, v.KVBlocksFree()),
	)
	return p
}

// summaryAttrs is the number of step.BATCH_SUMMARY attributes: 16 from the
// scheduler and 3 device timings added when the step has executed.
const summaryAttrs = 16 + 3

// snapshotAttrs is the most attributes of one step.REQUEST_SNAPSHOT.
const snapshotAttrs = 11

// appendSnapshotAttributes appends one step.REQUEST_SNAPSHOT's attributes.
func appendSnapshotAttributes(attrs []attribute.KeyValue, step uint64, r scheduler.RequestView, scheduled, computedBefore int, decode bool) []attribute.KeyValue {
	phase := scheduler.PhasePrefill
	if decode {
		phase = scheduler.PhaseDecode
	}
	attrs = append(attrs,
		attribute.Int64(AttrStepID, int64(step)),
		attribute.String(AttrSnapRequestID, r.RequestID()),
		attribute.String(AttrSnapPhase, string(phase)),
		attribute.Int(AttrSnapNumPromptTokens, r.NumPromptTokens()),
		attribute.Int(AttrSnapNumComputed, computedBefore),
		attribute.Int(AttrSnapNumOutputTokens, r.NumOutputTokens()),
		attribute.Int(AttrSnapNumPreemptions, r.NumPreemptions()),
		attribute.Int(AttrSnapScheduledThisStep, scheduled),
		attribute.Int(AttrSnapKVBlocksAllocated, r.BlocksAllocated()),
		attribute.Int(AttrSnapKVBlocksCached, r.BlocksCached()),
	)
	if cached := r.NumCachedTokens(); cached > 0 {
		attrs = append(attrs, attribute.Int(AttrSnapEffectivePromptLn, r.NumPromptTokens()-cached))
	}
	return attrs
}

// stepTiming attaches the device timing of step and emits its events.
func (s *stepTracer) stepTiming(step uint64, prepare, forward, sample time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disabled {
		return
	}
	for _, p := range s.pending {
		if p.step == step {
			p.summary = append(p.summary,
				attribute.Int64(AttrDeviceForwardUS, forward.Microseconds()),
				attribute.Int64(AttrDeviceSampleUS, sample.Microseconds()),
				attribute.Int64(AttrRunnerPrepareUS, prepare.Microseconds()),
			)
		}
	}
	s.flushLocked(step)
}

// flushLocked emits the events of the pending steps up to and including
// step, in step order.
func (s *stepTracer) flushLocked(step uint64) {
	for len(s.pending) > 0 && s.pending[0].step <= step && !s.disabled {
		p := s.pending[0]
		s.pending = s.pending[1:]
		s.addEventLocked(p.step, EventBatchSummary, p.at, p.summary)
		for _, snap := range p.snapshots {
			s.addEventLocked(p.step, EventRequestSnapshot, p.at, snap)
		}
		s.closeIfDueLocked(p.step + 1)
	}
	if len(s.pending) == 0 {
		s.pending = nil // let the backing array go
	}
}

// addEventLocked adds one event, opening a window if none is open and
// closing a full one first, so that no event is dropped by the SDK limit.
func (s *stepTracer) addEventLocked(step uint64, name string, at time.Time, attrs []attribute.KeyValue) {
	if s.disabled {
		return
	}
	if s.win != nil && s.win.events >= s.eventLimit {
		s.closeLocked(at)
	}
	if s.win == nil && !s.openLocked(step, at) {
		return
	}
	s.win.span.AddEvent(name, trace.WithTimestamp(at), trace.WithAttributes(attrs...))
	s.win.events++
	s.win.last = step
}

// closeIfDueLocked closes the open window once next is closure-interval
// steps past its start. A window only exists once it holds an event.
func (s *stepTracer) closeIfDueLocked(next uint64) {
	if s.win != nil && next >= s.win.start+s.interval {
		s.closeLocked(time.Now())
	}
}

// openLocked starts scheduler_steps_<k>; a failure disables step tracing.
func (s *stepTracer) openLocked(step uint64, at time.Time) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			s.disableLocked(fmt.Errorf("panic: %v", p))
			ok = false
		}
	}()
	seq := s.seq + 1
	_, span := s.tracer.Start(context.Background(), fmt.Sprintf("%s%d", SpanStepPrefix, seq),
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithTimestamp(at),
		trace.WithAttributes(
			attribute.Int64(AttrSpanSequence, seq),
			attribute.Int64(AttrStepRangeStart, int64(step)),
			attribute.Int64(AttrClosureInterval, int64(s.interval)),
		))
	if span == nil || !span.SpanContext().IsValid() {
		s.disableLocked(fmt.Errorf("tracer returned an invalid span"))
		return false
	}
	s.seq = seq
	s.win = &stepWindow{span: span, start: step, last: step}
	return true
}

// closeLocked ends the open window; a failure only warns.
func (s *stepTracer) closeLocked(at time.Time) {
	w := s.win
	s.win = nil
	defer func() {
		if p := recover(); p != nil {
			s.log.Warn("step tracing: closing a step span failed", "err", p)
		}
	}()
	w.span.SetAttributes(attribute.Int64(AttrStepRangeEnd, int64(w.last)))
	w.span.End(trace.WithTimestamp(at))
}

func (s *stepTracer) disableLocked(err error) {
	s.disabled = true
	s.pending = nil
	s.log.Warn("step tracing disabled: opening a step span failed", "err", err)
}

// shutdown emits a pending step and closes the last window.
func (s *stepTracer) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disabled {
		return
	}
	s.flushLocked(math.MaxUint64)
	if s.win != nil {
		s.closeLocked(time.Now())
	}
}
