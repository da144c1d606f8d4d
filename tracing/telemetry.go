package tracing

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
)

// Telemetry is the process's observability: one TracerProvider (when a
// collector is configured), journey and step tracing, and the metrics. Its
// hooks are safe to call after Shutdown (they record nothing new).
type Telemetry struct {
	// What the hooks read comes first, in as few cache lines as may be: in
	// a server each hook finds them evicted by the serving code between.
	closed         atomic.Bool
	journey        bool         // cfg.EnableJourneyTracing
	apiSpans       *spanStarter // llm_request; nil: tracing off
	journeySampler RequestSampler
	now            func() time.Time // time.Now; tests make it deterministic
	export         *exportProcessor // the provider's only processor, or nil (see eventSink)
	core           *coreTracer      // nil: tracing off
	steps          *stepTracer      // nil: step tracing off
	metrics        *metrics
	lastStep       atomic.Uint64 // the scheduler's current counter, from StepBuilt

	apiOpen registry[*apiSpan]

	cfg Config
	tp  *sdktrace.TracerProvider // nil: tracing off

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup validates c, builds the TracerProvider (the OTLP export processor
// with its bounded non-blocking queue) when tracing is configured, and the
// metrics. Call Shutdown at exit.
func Setup(ctx context.Context, c Config) (*Telemetry, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	m, err := newMetrics(c)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{cfg: c, journey: c.EnableJourneyTracing, metrics: m, now: time.Now}
	if !c.tracingOn() {
		return t, nil
	}
	installErrorHandler(c.Logger)
	tp, res, sole, otlp, err := newTracerProvider(ctx, c)
	if err != nil {
		return nil, errors.Join(err, m.provider.Shutdown(ctx))
	}
	t.tp, t.export = tp, sole
	if otlp != nil {
		if err := m.observeExport(otlp.state, c.protocol()); err != nil {
			return nil, errors.Join(err, tp.Shutdown(ctx), m.provider.Shutdown(ctx))
		}
	}
	var direct *directSpans
	if !c.sdkSpans {
		direct = newDirectSpans(sole, res, tp)
	}
	t.apiSpans = newSpanStarter(tp, ScopeAPI, SpanRequest, trace.SpanKindServer, direct)
	t.journeySampler = c.JourneySampler
	if t.journeySampler == nil {
		t.journeySampler = NewRateSampler(c.JourneySampleRate)
	}
	t.core = newCoreTracer(newSpanStarter(tp, ScopeScheduler, SpanCore, trace.SpanKindInternal, direct), t.export)
	if c.StepTracingEnabled {
		if c.StepSampler == nil {
			c.StepSampler = NewHashStepSampler(c.StepSampleRate, rand.Uint64())
		}
		if c.RichSampler == nil {
			c.RichSampler = NewHashStepSampler(c.StepRichSubsampleRate, rand.Uint64())
		}
		t.steps = newStepTracer(newSpanStarter(tp, ScopeStep, SpanStepPrefix, trace.SpanKindInternal, direct), c, t.export)
	}
	return t, nil
}

// TracerProvider returns the process's provider (a no-op one when tracing
// is off).
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t.tp == nil {
		return noop.NewTracerProvider()
	}
	return t.tp
}

// MetricsHandler serves the Prometheus exposition for /metrics.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metrics.handler }

// HTTP returns the server hook: api.* events and the llm_request span.
func (t *Telemetry) HTTP() server.Telemetry { return httpTelemetry{t: t} }

// SchedulerObserver returns the scheduler.Observer for the engine.
func (t *Telemetry) SchedulerObserver() scheduler.Observer { return observer{t: t} }

// EngineHooks returns every engine hook, ready for engine.Config.Hooks.
func (t *Telemetry) EngineHooks() engine.Hooks {
	return engine.Hooks{
		Observer:       t.SchedulerObserver(),
		OnStep:         t.OnStep,
		OnRequestStart: t.OnRequestStart,
		OnRequestEnd:   t.OnRequestEnd,
	}
}

// OnRequestStart creates the request's metric state and, when its trace
// headers say x-vllm-journey-sampled "1", its llm_core span, whose state
// it returns for the engine to hand back (engine.Hooks.OnRequestStart). A
// hook that wraps it must return what it returns: the journey hooks find
// llm_core only there.
func (t *Telemetry) OnRequestStart(rs engine.RequestStart) (observerState any) {
	if t.closed.Load() {
		return nil
	}
	t.metrics.requestStarted(rs)
	if t.core != nil {
		if st := t.core.start(rs.ID, rs.TraceHeaders, rs.NumPromptTokens, rs.MaxTokens, rs.Arrival); st != nil {
			return st // never a nil *coreState in an interface
		}
	}
	return nil
}

// OnRequestEnd records the request metrics and is the cleanup of every
// per-request state, whatever the path.
func (t *Telemetry) OnRequestEnd(re engine.RequestEnd) {
	t.metrics.requestEnded(re)
	if t.core != nil {
		t.core.finishFromEnd(re.ObserverState, t.lastStep.Load(), re.Reason, re.NumOutputTokens)
	}
}

// OnStep records the step's metrics and gives step tracing the step's
// device timing.
func (t *Telemetry) OnStep(rec *engine.StepRecord) {
	t.metrics.step(rec)
	if t.steps != nil {
		t.steps.stepTiming(rec.Step, rec.Prepare, rec.Forward, rec.Sample)
	}
}

// openAPI registers a live llm_request span, for Shutdown to end.
func (t *Telemetry) openAPI(s *apiSpan) { t.apiOpen.add(s) }

func (t *Telemetry) closeAPI(s *apiSpan) { t.apiOpen.remove(s) }

// liveState counts per-request state held anywhere (tests assert 0).
func (t *Telemetry) liveState() (api, core, metric int) {
	api = t.apiOpen.live()
	if t.core != nil {
		core = t.core.live()
	}
	return api, core, t.metrics.live()
}

// Shutdown ends every open span (API spans with api.ABORTED reason
// "shutdown", core spans with status ERROR, the last step window), flushes
// the exporter within ctx and stops the metrics. It is idempotent.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		t.closed.Store(true)
		t.endOpenAPISpans()
		if t.steps != nil {
			t.steps.shutdown()
		}
		if t.core != nil {
			t.core.shutdown()
		}
		t.metrics.forget()
		var errs []error
		if t.tp != nil {
			errs = append(errs, t.tp.Shutdown(ctx))
		}
		errs = append(errs, t.metrics.provider.Shutdown(ctx))
		t.shutdownErr = errors.Join(errs...)
	})
	return t.shutdownErr
}

func (t *Telemetry) endOpenAPISpans() {
	for _, s := range t.apiOpen.takeAll() {
		s.endWith(server.ReasonShutdown, errShutdown)
	}
}

var errShutdown = errors.New("server shutting down")

// observer implements scheduler.Observer: journey events, step tracing and
// the scheduler-side metrics.
type observer struct{ t *Telemetry }

func (o observer) Queued(r scheduler.RequestView, step uint64) {
	if o.t.core != nil {
		o.t.core.queued(r, step)
	}
}

func (o observer) Scheduled(r scheduler.RequestView, step uint64, resumed bool) {
	if o.t.core != nil {
		o.t.core.scheduled(r, step, resumed)
	}
}

func (o observer) FirstToken(r scheduler.RequestView, step uint64) {
	if o.t.core != nil {
		o.t.core.firstToken(r, step)
	}
}

func (o observer) Preempted(r scheduler.RequestView, step uint64) {
	o.t.metrics.preempted()
	if o.t.core != nil {
		o.t.core.preempted(r, step)
	}
}

func (o observer) Finished(r scheduler.RequestView, step uint64, reason scheduler.FinishReason) {
	if o.t.core != nil {
		o.t.core.finishedView(r, step, reason)
	}
}

func (o observer) StepBuilt(out *scheduler.Output, v scheduler.StepView) {
	o.t.lastStep.Store(out.Step)
	o.t.metrics.stepBuilt(v)
	if o.t.steps != nil {
		o.t.steps.stepBuilt(out, v)
	}
}
