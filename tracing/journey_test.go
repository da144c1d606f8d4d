package tracing

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
)

var journeyKeys = []string{AttrEventType, AttrTSMonotonic, AttrTSMonotonicNS, AttrSchedulerStep, AttrPhase,
	AttrPrefillDoneTokens, AttrPrefillTotalTokens, AttrDecodeDoneTokens, AttrDecodeMaxTokens, AttrNumPreemptions}

// flow drives one request through the API hooks and the engine hooks the
// way server and engine do.
type flow struct {
	h       *harness
	api     server.RequestSpan
	req     *fakeReq
	headers map[string]string
	times   engine.RequestTimes
}

func (h *harness) newFlow(id string, prompt, max int, clientHeaders map[string]string) *flow {
	f := &flow{h: h, req: newFakeReq(id, prompt, max)}
	f.api = h.arrive(clientHeaders)
	f.api.Parsed(server.RequestInfo{RequestID: "cmpl-" + id, Model: "stories260K", PromptTokens: prompt,
		Temperature: ptr(0.7), MaxTokens: ptr(max), N: ptr(1)})
	f.headers = f.api.TraceHeaders()
	f.times.Arrival = f.h.tel.now()
	h.start(f.req, f.headers)
	h.obs.Queued(f.req, 0)
	f.api.HandoffToCore(time.Time{})
	return f
}

func ptr[T any](v T) *T { return &v }

// schedule admits the request at step and computes n prompt tokens.
func (f *flow) schedule(step uint64, resumed bool, n int) {
	if f.times.Scheduled.IsZero() {
		f.times.Scheduled = f.h.tel.now()
	}
	f.req.phase = scheduler.PhasePrefill
	if f.req.output > 0 {
		f.req.phase = scheduler.PhaseDecode
	}
	f.h.obs.Scheduled(f.req, step, resumed)
	f.req.computed += n
	f.req.highWater = max(f.req.highWater, min(f.req.computed, f.req.prompt))
}

func (f *flow) token(step uint64) {
	f.req.output++
	f.req.phase = scheduler.PhaseDecode
	now := f.h.tel.now()
	if f.req.output == 1 {
		f.times.FirstToken = now
		f.h.obs.FirstToken(f.req, step)
		f.api.FirstResponseFromCore(now)
	}
	f.times.LastToken = now
}

func (f *flow) preempt(step uint64) {
	f.req.preemptions++
	f.req.computed = 0
	f.req.highWater = 0 // a view that forgot its mark: the tracer must not
	f.h.obs.Preempted(f.req, step)
}

func (f *flow) finish(step uint64, reason scheduler.FinishReason) {
	f.times.Finished = f.h.tel.now()
	f.h.obs.Finished(f.req, step, reason)
	f.h.end(f.req, f.headers, reason, f.times)
}

// complete finishes the request at step and ends its API span as a
// handler does after the last of tokens.
func (f *flow) complete(step uint64, reason scheduler.FinishReason, tokens int) {
	f.finish(step, reason)
	f.api.Departed(server.Outcome{CompletionTokens: tokens, Times: f.times})
	f.api.End()
}

func TestJourneyNormal(t *testing.T) {
	h := newHarness(t, nil)
	f := h.newFlow("r1", 10, 3, nil)
	f.schedule(1, false, 10)
	f.token(1)
	f.token(2)
	f.token(3)
	f.complete(3, scheduler.FinishStop, 3)

	api, core := h.one(SpanRequest), h.one(SpanCore)
	assert.Equal(t, trace.SpanKindServer, api.SpanKind())
	assert.Equal(t, ScopeAPI, api.InstrumentationScope().Name)
	assert.Equal(t, trace.SpanKindInternal, core.SpanKind())
	assert.Equal(t, ScopeScheduler, core.InstrumentationScope().Name)
	assert.Equal(t, api.SpanContext().TraceID(), core.SpanContext().TraceID())
	assert.Equal(t, api.SpanContext().SpanID(), core.Parent().SpanID())
	assert.False(t, api.Parent().IsValid(), "no incoming traceparent: root")

	assert.Equal(t, []string{EventArrived, EventHandoff, EventFirstResponse, EventDeparted}, eventNames(api))
	for _, e := range api.Events() {
		assert.Contains(t, attrMap(e.Attributes), AttrEventTSMonotonic, e.Name)
	}
	a := attrMap(api.Attributes())
	for _, k := range []string{AttrRequestID, AttrHTTPRoute, AttrResponseModel, AttrPromptTokens, AttrTemperature,
		AttrMaxTokens, AttrN, AttrCompletionTokens, AttrTimeInQueue, AttrTTFT, AttrE2E, AttrTimeInPrefill,
		AttrTimeInDecode, AttrTimeInInference} {
		assert.Contains(t, a, k)
	}
	assert.NotContains(t, a, AttrTopP, "unset values are skipped")
	assert.Equal(t, "cmpl-r1", a[AttrRequestID].AsString())
	assert.Equal(t, int64(3), a[AttrCompletionTokens].AsInt64())
	for key, d := range map[string]time.Duration{
		AttrTimeInQueue: f.times.QueueTime(), AttrTTFT: f.times.TTFT(), AttrE2E: f.times.E2E(),
		AttrTimeInPrefill: f.times.Prefill(), AttrTimeInDecode: f.times.Decode(), AttrTimeInInference: f.times.Inference(),
	} {
		assert.Positive(t, d, key)
		assert.Equal(t, d.Seconds(), a[key].AsFloat64(), key)
	}
	assert.Equal(t, codes.Unset, api.Status().Code)

	assert.Equal(t, []string{"journey.QUEUED", "journey.SCHEDULED", "journey.FIRST_TOKEN", "journey.FINISHED"}, eventNames(core))
	for _, e := range core.Events() {
		m := attrMap(e.Attributes)
		for _, k := range journeyKeys {
			assert.Contains(t, m, k, e.Name)
		}
		assert.Equal(t, float64(m[AttrTSMonotonicNS].AsInt64())/1e9, m[AttrTSMonotonic].AsFloat64(), "one clock read")
	}
	assert.Equal(t, "r1", attrMap(core.Attributes())[AttrRequestID].AsString())
	q := event(t, core, "journey.QUEUED")
	assert.Equal(t, "WAITING", q[AttrPhase].AsString())
	assert.Equal(t, int64(0), q[AttrSchedulerStep].AsInt64())
	s := event(t, core, "journey.SCHEDULED")
	assert.Equal(t, ScheduleKindFirst, s[AttrScheduleKind].AsString())
	assert.Equal(t, int64(1), s[AttrSchedulerStep].AsInt64())
	ft := event(t, core, "journey.FIRST_TOKEN")
	assert.Equal(t, int64(1), ft[AttrSchedulerStep].AsInt64(), "step of the producing batch")
	assert.Equal(t, int64(10), ft[AttrPrefillDoneTokens].AsInt64())
	assert.Equal(t, int64(1), ft[AttrDecodeDoneTokens].AsInt64())
	fin := event(t, core, "journey.FINISHED")
	assert.Equal(t, FinishStatusStopped, fin[AttrFinishStatus].AsString())
	assert.Equal(t, "DECODE", fin[AttrPhase].AsString())
	assert.Equal(t, int64(3), fin[AttrSchedulerStep].AsInt64())
	assert.Equal(t, int64(3), fin[AttrDecodeDoneTokens].AsInt64())
	assert.Equal(t, int64(3), fin[AttrDecodeMaxTokens].AsInt64())
	h.requireNoState()
}

func TestJourneyPreemptedKeepsHighWater(t *testing.T) {
	h := newHarness(t, nil)
	f := h.newFlow("p", 20, 4, nil)
	f.schedule(1, false, 8) // chunked prefill: 8 of 20
	f.schedule(2, false, 12)
	f.token(2)
	f.preempt(3)
	f.schedule(5, true, 21)
	f.token(5)
	f.token(6)
	f.complete(6, scheduler.FinishLength, 3)

	core := h.one(SpanCore)
	assert.Equal(t, []string{"journey.QUEUED", "journey.SCHEDULED", "journey.SCHEDULED", "journey.FIRST_TOKEN",
		"journey.PREEMPTED", "journey.SCHEDULED", "journey.FINISHED"}, eventNames(core))
	p := event(t, core, "journey.PREEMPTED")
	assert.Equal(t, int64(1), p[AttrNumPreemptions].AsInt64(), "after increment")
	assert.Equal(t, int64(20), p[AttrPrefillDoneTokens].AsInt64(), "the mark survives preemption")
	assert.Equal(t, int64(3), p[AttrSchedulerStep].AsInt64())
	scheds := events(core, "journey.SCHEDULED")
	require.Len(t, scheds, 3)
	assert.Equal(t, int64(8), scheds[1][AttrPrefillDoneTokens].AsInt64(), "mark updated after the first chunk")
	assert.Equal(t, ScheduleKindResume, scheds[2][AttrScheduleKind].AsString())
	assert.Equal(t, int64(1), scheds[2][AttrNumPreemptions].AsInt64())
	assert.Equal(t, int64(20), scheds[2][AttrPrefillDoneTokens].AsInt64())
	fin := event(t, core, "journey.FINISHED")
	assert.Equal(t, FinishStatusLength, fin[AttrFinishStatus].AsString())
	assert.Len(t, events(core, "journey.FIRST_TOKEN"), 1, "FIRST_TOKEN once")
	h.requireNoState()
}

func TestJourneyAbortPaths(t *testing.T) {
	tests := []struct {
		name       string
		run        func(f *flow)
		apiReason  string
		corePhase  string
		coreStatus string
	}{
		{"aborted while waiting", func(f *flow) {
			f.finish(0, scheduler.FinishAbort)
			f.api.Aborted(server.ReasonClientDisconnect, errors.New("context canceled"))
		}, server.ReasonClientDisconnect, "WAITING", FinishStatusAborted},
		{"aborted while running", func(f *flow) {
			f.schedule(1, false, 5)
			f.token(1)
			f.api.Aborted(server.ReasonClientDisconnect, errors.New("context canceled"))
			f.finish(2, scheduler.FinishAbort)
		}, server.ReasonClientDisconnect, "DECODE", FinishStatusAborted},
		{"aborted during prefill", func(f *flow) {
			f.schedule(1, false, 2)
			f.api.Aborted(server.ReasonTimeout, errors.New("deadline exceeded"))
			f.finish(1, scheduler.FinishAbort)
		}, server.ReasonTimeout, "PREFILL", FinishStatusAborted},
		{"generation error", func(f *flow) {
			f.schedule(1, false, 5)
			f.finish(1, scheduler.FinishError)
			f.api.Aborted(server.ReasonGeneration, errors.New("kernel failed"))
		}, server.ReasonGeneration, "PREFILL", FinishStatusError},
		{"engine ended without scheduler event (shutdown)", func(f *flow) {
			f.h.end(f.req, f.headers, scheduler.FinishAbort, f.times)
			f.api.Aborted(server.ReasonShutdown, errors.New("shutting down"))
		}, server.ReasonShutdown, "WAITING", FinishStatusAborted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			f := h.newFlow("a", 5, 4, nil)
			tt.run(f)
			f.api.End()
			f.api.End() // idempotent

			api, core := h.one(SpanRequest), h.one(SpanCore)
			ab := event(t, api, EventAborted)
			assert.Equal(t, tt.apiReason, ab[AttrReason].AsString())
			assert.NotEmpty(t, ab[AttrError].AsString())
			assert.Contains(t, ab, AttrEventTSMonotonic)
			assert.Equal(t, codes.Error, api.Status().Code)
			assert.NotContains(t, eventNames(api), EventDeparted)
			a := attrMap(api.Attributes())
			assert.Contains(t, a, AttrHTTPRoute, "an aborted span keeps its route")
			assert.Contains(t, a, AttrRequestID, "and its request attributes")
			assert.NotContains(t, a, AttrCompletionTokens, "but has no outcome")
			fin := event(t, core, "journey.FINISHED")
			assert.Equal(t, tt.corePhase, fin[AttrPhase].AsString())
			assert.Equal(t, tt.coreStatus, fin[AttrFinishStatus].AsString())
			assert.Len(t, events(core, "journey.FINISHED"), 1)
			h.requireNoState()
		})
	}
}

func TestJourneyValidationFailureBeforeHandoff(t *testing.T) {
	h := newHarness(t, nil)
	api := h.arrive(nil)
	api.Aborted(server.ReasonValidation, errors.New("max_tokens must be positive"))
	api.End()
	s := h.one(SpanRequest)
	assert.Equal(t, []string{EventArrived, EventAborted}, eventNames(s))
	assert.Equal(t, server.ReasonValidation, event(t, s, EventAborted)[AttrReason].AsString())
	assert.Empty(t, h.spans(SpanCore))
	h.requireNoState()
}

// TestHandoffAtTheGivenTime: api.HANDOFF_TO_CORE is placed when the
// handoff began, as the server says.
func TestHandoffAtTheGivenTime(t *testing.T) {
	h := newHarness(t, nil)
	api := h.arrive(nil)
	at := time.Unix(1700000000, 0)
	api.HandoffToCore(at)
	api.End()
	s := h.one(SpanRequest)
	require.Equal(t, []string{EventArrived, EventHandoff, EventAborted}, eventNames(s))
	assert.Equal(t, at, s.Events()[1].Time)
	assert.Equal(t, monotonicSeconds(at), event(t, s, EventHandoff)[AttrEventTSMonotonic].AsFloat64())
}

// TestUnsetNIsSkipped: a request without n has no gen_ai.request.n, and
// vllm:request_params_n still counts its one choice.
func TestUnsetNIsSkipped(t *testing.T) {
	h := newHarness(t, nil)
	for _, n := range []*int{nil, ptr(3)} {
		api := h.arrive(nil)
		api.Parsed(server.RequestInfo{RequestID: "cmpl-n", Model: "stories260K", PromptTokens: 2, N: n})
		api.Aborted(server.ReasonValidation, errors.New("prompt too long"))
		api.End()
	}
	spans := h.spans(SpanRequest)
	require.Len(t, spans, 2)
	assert.NotContains(t, attrMap(spans[0].Attributes()), AttrN, "n unset")
	assert.Equal(t, int64(3), attrMap(spans[1].Attributes())[AttrN].AsInt64())
	hist := scrape(t, h.tel)["vllm:request_params_n"].GetMetric()[0].GetHistogram()
	assert.Equal(t, uint64(2), hist.GetSampleCount())
	assert.Equal(t, 4.0, hist.GetSampleSum(), "1 (the default) + 3")
}

func TestJourneyEndWithoutOutcomeIsException(t *testing.T) {
	h := newHarness(t, nil)
	api := h.arrive(nil)
	func() {
		defer api.End() // what a panicking handler's defer does
	}()
	s := h.one(SpanRequest)
	ab := event(t, s, EventAborted)
	assert.Equal(t, server.ReasonException, ab[AttrReason].AsString())
	assert.Equal(t, codes.Error, s.Status().Code)
	h.requireNoState()
}

func TestJourneyFirstTerminalCallWins(t *testing.T) {
	h := newHarness(t, nil)
	f := h.newFlow("w", 3, 1, nil)
	f.api.FirstResponseFromCore(time.Now())
	f.api.FirstResponseFromCore(time.Now())
	f.api.Departed(server.Outcome{CompletionTokens: 1})
	f.api.Aborted(server.ReasonClientDisconnect, errors.New("late"))
	f.api.HandoffToCore(time.Time{})
	f.api.End()
	s := h.one(SpanRequest)
	assert.Equal(t, []string{EventArrived, EventHandoff, EventFirstResponse, EventDeparted}, eventNames(s))
}

func TestShutdownEndsAllOpenSpans(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.StepTracingEnabled = true; c.StepSampleRate = 1 })
	f := h.newFlow("s", 4, 8, nil)
	f.schedule(1, false, 4)
	h.obs.StepBuilt(&scheduler.Output{Step: 1, TotalNumScheduledTokens: 4},
		&fakeStep{running: []*fakeReq{f.req}, scheduled: map[string]int{"s": 4}, start: time.Now()})
	waiting := h.arrive(nil) // arrived, not yet handed off
	require.Empty(t, h.rec.Ended())

	require.NoError(t, h.tel.Shutdown(t.Context()))
	api := h.spans(SpanRequest)
	require.Len(t, api, 2)
	for _, s := range api {
		assert.Equal(t, server.ReasonShutdown, event(t, s, EventAborted)[AttrReason].AsString())
		assert.Contains(t, attrMap(s.Attributes()), AttrHTTPRoute, "a span ended by shutdown keeps its attributes")
	}
	core := h.one(SpanCore)
	assert.Equal(t, codes.Error, core.Status().Code)
	win := h.one(SpanStepPrefix + "1")
	assert.Len(t, events(win, EventBatchSummary), 1)
	assert.Equal(t, int64(1), attrMap(win.Attributes())[AttrStepRangeEnd].AsInt64())
	h.requireNoState()

	// After shutdown the hooks still work and record nothing new.
	waiting.End()
	f.api.End()
	f.finish(2, scheduler.FinishAbort)
	late := h.arrive(nil)
	late.End()
	assert.Len(t, h.rec.Ended(), 4)
	h.requireNoState()
}

func TestIncomingTraceparentIsTheParent(t *testing.T) {
	h := newHarness(t, nil)
	const remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	f := h.newFlow("tp", 3, 1, map[string]string{"traceparent": remote})
	f.finish(0, scheduler.FinishAbort)
	f.api.End()
	api, core := h.one(SpanRequest), h.one(SpanCore)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", api.SpanContext().TraceID().String())
	assert.Equal(t, "00f067aa0ba902b7", api.Parent().SpanID().String())
	assert.True(t, api.Parent().IsRemote())
	assert.Equal(t, api.SpanContext().SpanID(), core.Parent().SpanID())
	assert.Equal(t, api.SpanContext().TraceID(), core.SpanContext().TraceID())
}

// TestSamplingAtomicity: both spans or neither, one trace, correct parent,
// and a client-sent x-vllm-journey-sampled header changes nothing.
func TestSamplingAtomicity(t *testing.T) {
	for _, rate := range []float64{0, 1, 0.5} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				c.JourneySampleRate = rate
				c.JourneySampler = NewSeededRateSampler(rate, 42)
			})
			const n = 400
			for i := range n {
				client := map[string]string{JourneySampledHeader: "1"}
				if i%2 == 1 {
					client[JourneySampledHeader] = "0"
				}
				f := h.newFlow(fmt.Sprintf("req-%d", i), 4, 2, client)
				if i%3 == 0 {
					f.schedule(1, false, 4)
					f.token(1)
				}
				f.complete(1, scheduler.FinishStop, f.req.output)
			}
			api, core := h.spans(SpanRequest), h.spans(SpanCore)
			require.Len(t, core, len(api), "never one span without the other")
			byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
			for _, s := range api {
				byID[s.SpanContext().SpanID()] = s
			}
			for _, c := range core {
				parent, ok := byID[c.Parent().SpanID()]
				require.True(t, ok, "llm_core's parent is an llm_request")
				assert.Equal(t, parent.SpanContext().TraceID(), c.SpanContext().TraceID())
				delete(byID, c.Parent().SpanID()) // one core per API span
			}
			switch rate {
			case 0:
				assert.Empty(t, api)
			case 1:
				assert.Len(t, api, n)
			default:
				assert.InDelta(t, n/2, len(api), n/5)
			}
			h.requireNoState()
		})
	}
}

// TestEndpointOnlyStillExportsRequestSpans is fork defect 2.
func TestEndpointOnlyStillExportsRequestSpans(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.EnableJourneyTracing = false })
	for i := range 5 {
		f := h.newFlow(fmt.Sprint(i), 4, 1, nil)
		assert.NotContains(t, f.headers, JourneySampledHeader)
		f.schedule(1, false, 4)
		f.token(1)
		f.complete(1, scheduler.FinishStop, 1)
	}
	api := h.spans(SpanRequest)
	require.Len(t, api, 5)
	assert.Empty(t, h.spans(SpanCore))
	for _, s := range api {
		assert.Empty(t, s.Events(), "plain request span: no journey events")
		a := attrMap(s.Attributes())
		assert.Contains(t, a, AttrTTFT)
		assert.Contains(t, a, AttrE2E)
	}
	h.requireNoState()
}

// TestCoreOnlyForLibraryUsers: no HTTP, the header passed by hand.
func TestCoreOnlyForLibraryUsers(t *testing.T) {
	h := newHarness(t, nil)
	for _, v := range []string{"1", "true", "0", ""} {
		req := newFakeReq("lib-"+v, 2, 1)
		hdr := map[string]string{JourneySampledHeader: v}
		h.start(req, hdr)
		h.obs.Queued(req, 0)
		h.obs.Finished(req, 0, scheduler.FinishAbort)
		h.end(req, hdr, scheduler.FinishAbort, engine.RequestTimes{})
	}
	core := h.one(SpanCore)
	assert.Equal(t, "lib-1", attrMap(core.Attributes())[AttrRequestID].AsString(), "exactly \"1\" only")
	assert.False(t, core.Parent().IsValid())
	h.requireNoState()
}

// TestUnsampledClientParent: the journey decision is ours, the SDK's
// parent-based sampling still applies after it, and both spans follow it.
func TestUnsampledClientParent(t *testing.T) {
	h := newHarness(t, nil)
	const unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	f := h.newFlow("u", 3, 1, map[string]string{"traceparent": unsampled})
	assert.Equal(t, "1", f.headers[JourneySampledHeader], "journey decision independent of the W3C flag")
	f.schedule(1, false, 3)
	f.token(1)
	f.complete(1, scheduler.FinishStop, 1)
	assert.Empty(t, h.spans(SpanRequest), "neither span is recorded")
	assert.Empty(t, h.spans(SpanCore))
	h.requireNoState()
}

// TestEverySubRequestGetsItsCoreSpan is fork defect 5: n > 1 and
// multi-prompt requests hand the same headers to every sub-request.
func TestEverySubRequestGetsItsCoreSpan(t *testing.T) {
	h := newHarness(t, nil)
	api := h.arrive(nil)
	headers := api.TraceHeaders()
	for i := range 3 {
		req := newFakeReq(fmt.Sprint("multi-", i), 4, 1)
		h.start(req, headers)
		h.obs.Queued(req, 0)
		h.obs.Finished(req, 0, scheduler.FinishAbort)
		h.end(req, headers, scheduler.FinishAbort, engine.RequestTimes{})
	}
	api.HandoffToCore(time.Time{})
	api.Aborted(server.ReasonClientDisconnect, errors.New("gone"))
	api.End()
	root := h.one(SpanRequest)
	core := h.spans(SpanCore)
	require.Len(t, core, 3)
	for _, c := range core {
		assert.Equal(t, root.SpanContext().SpanID(), c.Parent().SpanID())
		assert.Equal(t, root.SpanContext().TraceID(), c.SpanContext().TraceID())
	}
	h.requireNoState()
}

// TestCollidingIDsKeepTheirOwnJourneys: journeys are not keyed by id
// (spec §6, defect 6): two live requests with the same id each keep their
// own llm_core, with all its events, under their own llm_request, whatever
// order they end in.
func TestCollidingIDsKeepTheirOwnJourneys(t *testing.T) {
	h := newHarness(t, nil)
	a := h.newFlow("same", 10, 2, nil)
	b := h.newFlow("same", 20, 2, nil)
	for _, f := range []*flow{a, b} {
		f.schedule(1, false, f.req.prompt)
		f.token(1)
	}
	for _, f := range []*flow{b, a} {
		f.token(2)
		f.complete(2, scheduler.FinishLength, 2)
	}
	core := h.spans(SpanCore)
	require.Len(t, core, 2)
	byParent := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, c := range core {
		byParent[c.Parent().SpanID()] = c
		assert.Equal(t, []string{"journey." + JourneyQueued, "journey." + JourneyScheduled,
			"journey." + JourneyFirstToken, "journey." + JourneyFinished}, eventNames(c))
		assert.Equal(t, codes.Unset, c.Status().Code)
	}
	for _, api := range h.spans(SpanRequest) {
		c := byParent[api.SpanContext().SpanID()]
		require.NotNil(t, c, "each llm_request has its own llm_core")
		prompt := attrMap(api.Attributes())[AttrPromptTokens].AsInt64()
		assert.Equal(t, prompt, event(t, c, "journey."+JourneyFinished)[AttrPrefillTotalTokens].AsInt64())
	}
	h.requireNoState()
}

// TestRegistryReusesSlots: ended spans free their slots for later ones,
// takeAll returns exactly the live spans, and a span released after
// takeAll leaves the emptied registry alone.
func TestRegistryReusesSlots(t *testing.T) {
	var r registry[*apiSpan]
	a, b, c, d := &apiSpan{}, &apiSpan{}, &apiSpan{}, &apiSpan{}
	r.add(a)
	r.add(b)
	r.add(c)
	r.remove(b)
	require.Equal(t, 2, r.live())
	r.add(d)
	require.Equal(t, 1, d.slot, "the freed slot is reused")
	require.Len(t, r.items, 3, "no slot is added while one is free")
	r.remove(d)
	r.remove(d) // twice: the second finds the slot free
	require.Equal(t, 2, r.live())
	require.ElementsMatch(t, []*apiSpan{a, c}, r.takeAll())
	require.Zero(t, r.live())
	r.remove(c) // ended after Shutdown took it
	require.Zero(t, r.live())
	r.add(b)
	require.Equal(t, []*apiSpan{b}, r.takeAll())
}

// TestTraceHeadersAreInjects: the engine request's W3C headers are exactly
// those propagation.TraceContext.Inject writes, for valid and invalid ids,
// every flag byte and trace states with and without entries, and the
// journey flag is added only for journey-sampled requests.
func TestTraceHeadersAreInjects(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	states := []string{"", "vendor=x", "a=1,tenant@vendor=b-2"}
	for i := range 2000 {
		var cfg trace.SpanContextConfig
		if i%7 != 0 { // every seventh: zero ids, an invalid context
			binary.LittleEndian.PutUint64(cfg.TraceID[:8], rng.Uint64())
			binary.LittleEndian.PutUint64(cfg.TraceID[8:], rng.Uint64())
			binary.LittleEndian.PutUint64(cfg.SpanID[:], rng.Uint64())
		}
		cfg.TraceFlags = trace.TraceFlags(rng.UintN(256))
		ts, err := trace.ParseTraceState(states[rng.IntN(len(states))])
		require.NoError(t, err)
		cfg.TraceState = ts
		sc := trace.NewSpanContext(cfg)
		journey := rng.IntN(2) == 0

		want := map[string]string{}
		w3c.Inject(trace.ContextWithSpanContext(context.Background(), sc), propagation.MapCarrier(want))
		if journey {
			want[JourneySampledHeader] = "1"
		}
		require.Equal(t, want, traceHeaders(sc, journey), "span context %v, journey %v", cfg, journey)
	}
}

// w3c is the library's W3C propagator, the oracle of traceHeaders
// (Inject) and remoteParent (Extract).
var w3c = propagation.TraceContext{}

// extracted is the span context propagation.TraceContext.Extract reads
// from headers: what remoteParent must return.
func extracted(headers map[string]string) trace.SpanContext {
	return trace.SpanContextFromContext(w3c.Extract(context.Background(), propagation.MapCarrier(headers)))
}

func TestRemoteParentIsExtract(t *testing.T) {
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	cases := []struct {
		name, traceparent, tracestate string
		valid                         bool
	}{
		{"sampled", "00-" + tid + "-" + sid + "-01", "", true},
		{"not sampled", "00-" + tid + "-" + sid + "-00", "", true},
		{"random flag", "00-" + tid + "-" + sid + "-03", "", true},
		{"reserved flag in version 00", "00-" + tid + "-" + sid + "-05", "", false},
		{"reserved flags of a later version dropped", "01-" + tid + "-" + sid + "-ff", "", true},
		{"a later version's extra fields", "cc-" + tid + "-" + sid + "-01-what-ever", "", true},
		{"extra field in version 00", "00-" + tid + "-" + sid + "-01-00", "", false},
		{"trailing dash in version 00", "00-" + tid + "-" + sid + "-01-", "", true},
		{"version ff", "ff-" + tid + "-" + sid + "-01", "", false},
		{"upper-case hex", "00-" + strings.ToUpper(tid) + "-" + sid + "-01", "", false},
		{"zero trace id", "00-00000000000000000000000000000000-" + sid + "-01", "", false},
		{"zero span id", "00-" + tid + "-0000000000000000-01", "", false},
		{"short span id", "00-" + tid + "-" + sid[1:] + "-01", "", false},
		{"no flags", "00-" + tid + "-" + sid, "", false},
		{"no dash after the trace id", "00-" + tid + "0" + sid + "-01", "", false},
		{"no dash after the span id", "00-" + tid + "-" + sid + "001", "", false},
		{"a later version in the version 00 layout", "01-" + tid + "-" + sid + "-01", "", true},
		{"version ff in the general layout", "ff-" + tid + "-" + sid + "-01-x", "", false},
		{"not hex", "00-" + tid[:31] + "g-" + sid + "-01", "", false},
		{"empty", "", "", false},
		{"trace state", "00-" + tid + "-" + sid + "-01", "a=1,tenant@vendor=b-2", true},
		{"bad trace state ignored", "00-" + tid + "-" + sid + "-01", "not a trace state", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{traceparentHeader: tc.traceparent, tracestateHeader: tc.tracestate, JourneySampledHeader: "1"}
			got := remoteParent(propagation.MapCarrier(h))
			require.Equal(t, extracted(h), got)
			require.Equal(t, tc.valid, got.IsValid())
			if got.IsValid() {
				require.True(t, got.IsRemote())
			}
		})
	}
	// every context traceHeaders writes reads back as Extract reads it
	rng := rand.New(rand.NewPCG(5, 6))
	for range 500 {
		var cfg trace.SpanContextConfig
		binary.LittleEndian.PutUint64(cfg.TraceID[:8], rng.Uint64())
		binary.LittleEndian.PutUint64(cfg.TraceID[8:], rng.Uint64())
		binary.LittleEndian.PutUint64(cfg.SpanID[:], rng.Uint64())
		cfg.TraceFlags = trace.TraceFlags(rng.UintN(256))
		h := traceHeaders(trace.NewSpanContext(cfg), true)
		require.Equal(t, extracted(h), remoteParent(propagation.MapCarrier(h)))
	}
}

func FuzzRemoteParent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=x")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff-x", "")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", "a=1,b=2")
	f.Fuzz(func(t *testing.T, traceparent, tracestate string) {
		h := map[string]string{traceparentHeader: traceparent, tracestateHeader: tracestate}
		require.Equal(t, extracted(h), remoteParent(propagation.MapCarrier(h)))
	})
}
