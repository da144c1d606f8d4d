package tracing

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
)

// fakeReq is a hand-driven scheduler.RequestView.
type fakeReq struct {
	id                         string
	prompt, computed, output   int
	maxTokens, highWater       int
	phase                      scheduler.Phase
	preemptions, cached        int
	blocksAllocated, blocksHit int
	state                      any // what OnRequestStart returned
}

func (r *fakeReq) RequestID() string      { return r.id }
func (r *fakeReq) NumPromptTokens() int   { return r.prompt }
func (r *fakeReq) NumComputedTokens() int { return r.computed }
func (r *fakeReq) NumOutputTokens() int   { return r.output }
func (r *fakeReq) MaxTokens() int         { return r.maxTokens }
func (r *fakeReq) PrefillHighWater() int  { return r.highWater }
func (r *fakeReq) Phase() scheduler.Phase { return r.phase }
func (r *fakeReq) NumPreemptions() int    { return r.preemptions }
func (r *fakeReq) NumCachedTokens() int   { return r.cached }
func (r *fakeReq) BlocksAllocated() int   { return r.blocksAllocated }
func (r *fakeReq) BlocksCached() int      { return r.blocksHit }
func (r *fakeReq) Priority() int          { return 0 }
func (r *fakeReq) ObserverState() any     { return r.state }
func newFakeReq(id string, prompt, max int) *fakeReq {
	return &fakeReq{id: id, prompt: prompt, maxTokens: max, phase: scheduler.PhaseWaiting}
}

// fakeStep is a hand-driven scheduler.StepView.
type fakeStep struct {
	running   []*fakeReq
	scheduled map[string]int
	waiting   int
	finished  int
	start     time.Time
}

func (v *fakeStep) NumRunning() int               { return len(v.running) }
func (v *fakeStep) NumWaiting() int               { return v.waiting }
func (v *fakeStep) KVUsage() float64              { return 0.25 }
func (v *fakeStep) KVBlocksTotal() int            { return 100 }
func (v *fakeStep) KVBlocksFree() int             { return 75 }
func (v *fakeStep) NumFinishedSincePrevStep() int { return v.finished }
func (v *fakeStep) StartTime() time.Time          { return v.start }
func (v *fakeStep) Batch() scheduler.BatchCounts {
	var c scheduler.BatchCounts
	for _, r := range v.running {
		if n := v.scheduled[r.id]; n > 0 && r.NumOutputTokens() > 0 {
			c.DecodeReqs++
			c.DecodeTokens += n
		} else if n > 0 {
			c.PrefillReqs++
			c.PrefillTokens += n
		}
	}
	return c
}
func (v *fakeStep) Running(fn func(scheduler.RequestView, int, int)) {
	for _, r := range v.running {
		fn(r, v.scheduled[r.id], r.computed)
	}
}

// harness is a Telemetry recording spans synchronously.
type harness struct {
	t   *testing.T
	tel *Telemetry
	rec *tracetest.SpanRecorder
	obs scheduler.Observer
}

func newHarness(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	c := DefaultConfig()
	c.SpanProcessors = []sdktrace.SpanProcessor{rec}
	c.EnableJourneyTracing = true
	c.ModelName = "stories260K"
	c.MaxModelLen = 512
	if mutate != nil {
		mutate(&c)
	}
	tel, err := Setup(context.Background(), c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return &harness{t: t, tel: tel, rec: rec, obs: tel.SchedulerObserver()}
}

// arrive simulates an HTTP request reaching the server.
func (h *harness) arrive(headers map[string]string) server.RequestSpan {
	r := httptest.NewRequest("POST", "/v1/completions", nil)
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return h.tel.HTTP().Arrived(r, "/v1/completions")
}

// start hands a request to the "engine".
func (h *harness) start(req *fakeReq, headers map[string]string) {
	req.state = h.tel.OnRequestStart(engine.RequestStart{ID: req.id, TraceHeaders: headers,
		NumPromptTokens: req.prompt, MaxTokens: req.maxTokens, Arrival: h.tel.now()})
}

func (h *harness) end(req *fakeReq, headers map[string]string, reason scheduler.FinishReason, times engine.RequestTimes) {
	h.tel.OnRequestEnd(engine.RequestEnd{ID: req.id, TraceHeaders: headers, Reason: reason,
		NumPromptTokens: req.prompt, NumOutputTokens: req.output, MaxTokens: req.maxTokens, Times: times,
		ObserverState: req.state})
}

func (h *harness) spans(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range h.rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func (h *harness) one(name string) sdktrace.ReadOnlySpan {
	h.t.Helper()
	s := h.spans(name)
	require.Len(h.t, s, 1, "spans named %s", name)
	return s[0]
}

func (h *harness) requireNoState() {
	h.t.Helper()
	api, core, met := h.tel.liveState()
	require.Zero(h.t, api, "open API spans")
	require.Zero(h.t, core, "core journey states")
	require.Zero(h.t, met, "request metric states")
}

func attrMap(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := make(map[string]attribute.Value, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

func eventNames(s sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, e := range s.Events() {
		names = append(names, e.Name)
	}
	return names
}

func event(t *testing.T, s sdktrace.ReadOnlySpan, name string) map[string]attribute.Value {
	t.Helper()
	for _, e := range s.Events() {
		if e.Name == name {
			return attrMap(e.Attributes)
		}
	}
	t.Fatalf("span %s has no event %s (has %v)", s.Name(), name, eventNames(s))
	return nil
}

func events(s sdktrace.ReadOnlySpan, name string) []map[string]attribute.Value {
	var out []map[string]attribute.Value
	for _, e := range s.Events() {
		if e.Name == name {
			out = append(out, attrMap(e.Attributes))
		}
	}
	return out
}
