package tracing

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
)

// journeyPlan is one request of a replayable journey script.
type journeyPlan struct {
	id            string
	prompt, max   int
	sampled       bool
	clientHeaders map[string]string
	path          func(f *flow, p journeyPlan)
	leaveOpen     bool // still running at shutdown
}

// journeyPaths are the ways a request goes, as the journey tests drive them.
var journeyPaths = []func(f *flow, p journeyPlan){
	func(f *flow, p journeyPlan) { // normal
		f.schedule(1, false, p.prompt)
		for step := range uint64(p.max) {
			f.token(step + 1)
		}
		f.finish(uint64(p.max), scheduler.FinishLength)
		f.api.Departed(server.Outcome{CompletionTokens: p.max, Times: f.times})
	},
	func(f *flow, p journeyPlan) { // preempted and resumed
		f.schedule(1, false, p.prompt/2)
		f.preempt(2)
		f.schedule(3, true, p.prompt)
		f.token(3)
		f.token(4)
		f.finish(4, scheduler.FinishStop)
		f.api.Departed(server.Outcome{CompletionTokens: 2, Times: f.times})
	},
	func(f *flow, p journeyPlan) { // aborted while waiting
		f.finish(0, scheduler.FinishAbort)
		f.api.Aborted(server.ReasonClientDisconnect, errors.New("context canceled"))
	},
	func(f *flow, p journeyPlan) { // aborted while running
		f.schedule(1, false, p.prompt)
		f.token(1)
		f.api.Aborted(server.ReasonClientDisconnect, errors.New("context canceled"))
		f.finish(2, scheduler.FinishAbort)
	},
	func(f *flow, p journeyPlan) { // generation error
		f.schedule(1, false, p.prompt)
		f.finish(1, scheduler.FinishError)
		f.api.Aborted(server.ReasonGeneration, errors.New("kernel failed"))
	},
	func(f *flow, p journeyPlan) { // the engine ended it without a scheduler event
		f.h.end(f.req, f.headers, scheduler.FinishAbort, f.times)
		f.api.Aborted(server.ReasonShutdown, errors.New("shutting down"))
	},
	func(f *flow, p journeyPlan) { // the handler returned without an outcome
		f.schedule(1, false, p.prompt)
		f.finish(1, scheduler.FinishLength)
	},
}

// lostByTheEngine leaves llm_core open (the engine never reports the end):
// Shutdown ends it, whatever ids later requests reuse.
func lostByTheEngine(f *flow, p journeyPlan) {
	f.schedule(1, false, p.prompt)
	f.api.Aborted(server.ReasonTimeout, errors.New("deadline exceeded"))
}

// queuedSampler answers SampleRequest from a script.
type queuedSampler struct{ answers []bool }

func (q *queuedSampler) SampleRequest() bool {
	a := q.answers[0]
	q.answers = q.answers[1:]
	return a
}

func randomJourneyPlans(r *rand.Rand) []journeyPlan {
	plans := make([]journeyPlan, 1+r.IntN(20))
	for i := range plans {
		p := journeyPlan{id: fmt.Sprintf("req-%d", i), prompt: 1 + r.IntN(3000), max: 1 + r.IntN(8),
			sampled: r.IntN(5) > 0, path: journeyPaths[r.IntN(len(journeyPaths))],
			// shutdown ends open spans in the order of their registry's
			// slots, the same both ways
			leaveOpen: r.IntN(6) == 0}
		switch r.IntN(4) {
		case 1:
			p.clientHeaders = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
		case 3: // with a vendor's trace state, which the spans carry on
			p.clientHeaders = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "vendor=abc,other=1"}
		case 2:
			p.clientHeaders = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}
		}
		if i > 0 && plans[i-1].path == nil { // the previous request was lost: reuse its id
			p.id, p.sampled = plans[i-1].id, true
		}
		if i < len(plans)-1 && r.IntN(8) == 0 {
			p.path, p.leaveOpen = nil, false // lostByTheEngine
		}
		plans[i] = p
	}
	return plans
}

// exportJourneys replays plans on a Telemetry whose only processor is an
// export processor over a capturing client, with events encoded for export
// (direct) or added through the SDK, on a counting clock, and returns the
// exported spans with their ids replaced by their order of appearance.
func exportJourneys(t *testing.T, plans []journeyPlan, direct, journey bool) []exportedSpan {
	t.Helper()
	sampler := &queuedSampler{}
	for _, p := range plans {
		sampler.answers = append(sampler.answers, p.sampled)
	}
	tel, client := exportTelemetry(t, direct, func(c *Config) {
		c.EnableJourneyTracing = journey
		c.ModelName, c.MaxModelLen = "stories260K", 4096
		c.JourneySampler = sampler
	})
	h := &harness{t: t, tel: tel, obs: tel.SchedulerObserver()}
	for _, plan := range plans {
		f := h.newFlow(plan.id, plan.prompt, plan.max, plan.clientHeaders)
		if plan.leaveOpen {
			f.schedule(1, false, plan.prompt)
			continue
		}
		if plan.path == nil {
			lostByTheEngine(f, plan)
		} else {
			plan.path(f, plan)
		}
		f.api.End()
	}
	require.NoError(t, tel.Shutdown(context.Background()))
	return decodeExported(t, client)
}

// exportTelemetry returns a Telemetry whose only processor is an export
// processor over a capturing client, with events encoded for export
// (direct) or added through the SDK, on a counting clock (both ways see the
// same timestamps).
func exportTelemetry(t *testing.T, direct bool, configure func(*Config)) (*Telemetry, *captureClient) {
	t.Helper()
	client := &captureClient{}
	p := newTestProcessor(t, client)
	p.maxRequestBytes = math.MaxInt
	c := DefaultConfig()
	c.SpanProcessors = []sdktrace.SpanProcessor{p}
	c.sdkSpans = !direct
	configure(&c)
	tel, err := Setup(context.Background(), c)
	require.NoError(t, err)
	require.Same(t, p, tel.export, "the sole export processor takes encoded events")
	require.Equal(t, direct, tel.apiSpans.direct != nil, "a server makes its journey spans without the SDK")
	var ticks atomic.Int64
	tel.now = func() time.Time {
		return baseNow.Add(time.Duration(ticks.Add(1)) * 13 * time.Microsecond)
	}
	tel.core.now = tel.now
	if tel.steps != nil {
		tel.steps.now = tel.now
	}
	if !direct {
		tel.export, tel.core.export = nil, nil
		if tel.steps != nil {
			tel.steps.export = nil
		}
	}
	return tel, client
}

// exportedSpan is a decoded span and the name of its scope.
type exportedSpan struct {
	scope string
	span  *tracepb.Span
}

// decodeExported returns every span client received, in order, with trace
// and span ids (random) checked and replaced by their order of first
// appearance.
func decodeExported(t *testing.T, client *captureClient) []exportedSpan {
	t.Helper()
	client.mu.Lock()
	defer client.mu.Unlock()
	var spans []exportedSpan
	for _, b := range client.requests {
		var req coltracepb.ExportTraceServiceRequest
		require.NoError(t, proto.Unmarshal(b, &req))
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					spans = append(spans, exportedSpan{scope: ss.Scope.GetName(), span: s})
				}
			}
		}
	}
	ids := map[string]int{}
	canonical := func(id []byte, size int) []byte {
		if len(id) == 0 {
			return nil
		}
		require.Len(t, id, size)
		n, ok := ids[string(id)]
		if !ok {
			n = len(ids) + 1
			ids[string(id)] = n
		}
		return []byte{byte(n >> 8), byte(n)}
	}
	for _, e := range spans {
		s := e.span
		s.TraceId, s.SpanId, s.ParentSpanId = canonical(s.TraceId, 16), canonical(s.SpanId, 8), canonical(s.ParentSpanId, 8)
	}
	return spans
}

// requireSameExport requires the spans exported with events through the
// SDK and encoded directly to be equal, and returns their events.
func requireSameExport(t *testing.T, viaSDK, direct []exportedSpan) (events int) {
	t.Helper()
	require.Equal(t, len(viaSDK), len(direct), "spans")
	for i := range viaSDK {
		require.Equal(t, viaSDK[i].scope, direct[i].scope)
		if !proto.Equal(viaSDK[i].span, direct[i].span) {
			t.Fatalf("span %d differs\nvia the SDK:\n%v\ndirect:\n%v", i, viaSDK[i].span, direct[i].span)
		}
		events += len(direct[i].span.Events)
	}
	return events
}

// TestJourneyEventsExportedDirectlyMatchTheSDKPath: the llm_request and
// llm_core spans a server exports (events encoded for export as they come)
// decode the same as when every event goes through the SDK's AddEvent,
// which the journey tests check in detail, on every path a request takes.
func TestJourneyEventsExportedDirectlyMatchTheSDKPath(t *testing.T) {
	for seed := range uint64(25) {
		requireSameJourneyExport(t, randomJourneyPlans(rand.New(rand.NewPCG(seed, 9))))
	}
}

// TestRequestSpansExportedDirectlyMatchTheSDKPath: with only the endpoint
// set (no journey tracing), every request still has its llm_request span,
// whose attributes are encoded directly; the export equals the SDK's.
func TestRequestSpansExportedDirectlyMatchTheSDKPath(t *testing.T) {
	for seed := range uint64(10) {
		plans := randomJourneyPlans(rand.New(rand.NewPCG(seed, 11)))
		direct := exportJourneys(t, plans, true, false)
		requireSameExport(t, exportJourneys(t, plans, false, false), direct)
		traced := 0
		for _, p := range plans {
			if !strings.HasSuffix(p.clientHeaders["traceparent"], "-00") {
				traced++
			}
		}
		require.Len(t, direct, traced, "one llm_request per request (but under a client's unsampled parent)")
		for _, s := range direct {
			require.Equal(t, SpanRequest, s.span.Name)
			require.NotEmpty(t, s.span.Attributes)
		}
	}
}

// FuzzJourneyEventsExport grows the comparison from fuzzed seeds.
func FuzzJourneyEventsExport(f *testing.F) {
	f.Add(uint64(2))
	f.Fuzz(func(t *testing.T, seed uint64) {
		requireSameJourneyExport(t, randomJourneyPlans(rand.New(rand.NewPCG(seed, 13))))
	})
}

func requireSameJourneyExport(t *testing.T, plans []journeyPlan) {
	t.Helper()
	direct := exportJourneys(t, plans, true, true)
	events := requireSameExport(t, exportJourneys(t, plans, false, true), direct)
	sampled := 0
	for _, p := range plans {
		if p.sampled && !strings.HasSuffix(p.clientHeaders["traceparent"], "-00") {
			sampled++ // not under a client's unsampled parent
		}
	}
	require.Len(t, direct, 2*sampled, "llm_request and llm_core per sampled request")
	require.GreaterOrEqual(t, events, 5*sampled, "api.* and journey.* events: at least ARRIVED, HANDOFF_TO_CORE, QUEUED, FINISHED and a terminal api event")
}

// TestShutdownDuringTrafficWithEncodedEvents: Shutdown may end spans while
// handlers and the engine still add events to them (run with -race); the
// encoded events must neither race nor be written into a buffer already
// returned to the pool, and every exported span must decode.
func TestShutdownDuringTrafficWithEncodedEvents(t *testing.T) {
	tel, client := exportTelemetry(t, true, func(c *Config) {
		c.EnableJourneyTracing = true
		c.StepTracingEnabled, c.StepSampleRate, c.StepRichSubsampleRate = true, 1, 1
	})
	h := &harness{t: t, tel: tel, obs: tel.SchedulerObserver()}
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for w := range 4 {
		wg.Go(func() {
			for i := range 300 {
				if i == 20 {
					once.Do(func() { close(started) })
				}
				f := h.newFlow(fmt.Sprintf("w%d-%d", w, i), 8, 2, nil)
				f.schedule(uint64(i), false, 8)
				f.token(uint64(i))
				f.token(uint64(i + 1))
				f.complete(uint64(i+1), scheduler.FinishLength, 2)
			}
		})
	}
	wg.Go(func() { // the engine's step hooks
		for step := uint64(1); step <= 2000; step++ {
			out, v := batch(step)
			h.obs.StepBuilt(out, v)
			tel.OnStep(&engine.StepRecord{Step: step, Forward: time.Millisecond})
		}
	})
	<-started
	require.NoError(t, tel.Shutdown(context.Background()))
	wg.Wait()
	h.requireNoState()
	spans := decodeExported(t, client)
	require.NotEmpty(t, spans)
	for _, s := range spans {
		for _, e := range s.span.Events {
			require.NotEmpty(t, e.Name, "span %s", s.span.Name)
			require.NotEmpty(t, e.Attributes, "span %s event %s", s.span.Name, e.Name)
		}
	}
}

// TestSpanLimitsKeepEventsOnTheSDKPath: when span limits could trim what
// vserve encodes directly (span events and llm_request's attributes), all
// of it goes through the SDK, which applies the limits (the direct
// encoding applies none), and the export shows them applied.
func TestSpanLimitsKeepEventsOnTheSDKPath(t *testing.T) {
	for _, limit := range []struct {
		env, value string
		check      func(t *testing.T, queued *tracepb.Span_Event, requestAttrs []*commonpb.KeyValue)
	}{
		{"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "5", func(t *testing.T, queued *tracepb.Span_Event, _ []*commonpb.KeyValue) {
			require.Len(t, queued.Attributes, 5)
			require.EqualValues(t, 5, queued.DroppedAttributesCount, "10 attributes, 5 kept")
		}},
		{"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3", func(t *testing.T, _ *tracepb.Span_Event, attrs []*commonpb.KeyValue) {
			require.Equal(t, AttrHTTPRoute, attrs[0].Key)
			require.Equal(t, "/v1", attrs[0].Value.GetStringValue(), "truncated by the SDK")
		}},
		{"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2", func(t *testing.T, _ *tracepb.Span_Event, attrs []*commonpb.KeyValue) {
			require.Len(t, attrs, 2)
		}},
	} {
		t.Run(limit.env, func(t *testing.T) {
			t.Setenv(limit.env, limit.value)
			client := &captureClient{}
			p := newTestProcessor(t, client)
			c := DefaultConfig()
			c.SpanProcessors = []sdktrace.SpanProcessor{p}
			c.EnableJourneyTracing = true
			tel, err := Setup(context.Background(), c)
			require.NoError(t, err)
			require.Nil(t, tel.export, "events and attributes go through the SDK")
			h := &harness{t: t, tel: tel, obs: tel.SchedulerObserver()}
			f := h.newFlow("req-limited", 8, 4, nil)
			f.schedule(1, false, 8)
			f.complete(2, scheduler.FinishStop, 1)
			require.NoError(t, tel.Shutdown(context.Background()))
			var queued *tracepb.Span_Event
			var requestAttrs []*commonpb.KeyValue
			for _, s := range decodeExported(t, client) {
				if s.span.Name == SpanRequest {
					requestAttrs = s.span.Attributes
				}
				for _, e := range s.span.Events {
					if e.Name == "journey."+JourneyQueued {
						queued = e
					}
				}
			}
			require.NotNil(t, queued)
			require.NotEmpty(t, requestAttrs)
			limit.check(t, queued, requestAttrs)
		})
	}
}
