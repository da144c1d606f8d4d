package tracing

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/otelconv"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/scheduler"
)

// meterName is the instrumentation scope of vserve's metrics.
const meterName = "github.com/vserve/vserve/tracing"

// Bucket boundaries of upstream vLLM (vllm/v1/metrics/loggers.py).
var (
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5,
		7.5, 10, 20, 40, 80, 160, 640, 2560}
	itlBuckets = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5,
		10, 20, 40, 80}
	requestLatencyBuckets = []float64{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120,
		240, 480, 960, 1920, 7680}
	iterationTokenBuckets = []float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}
	paramsNBuckets        = []float64{1, 2, 5, 10, 20}
	// stepTimeBuckets cover CPU microseconds to slow device seconds.
	stepTimeBuckets = []float64{1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
		0.05, 0.1, 0.25, 0.5, 1, 2.5}
)

// buckets125 is the 1-2-5 series up to and including max (upstream's
// build_1_2_5_buckets).
func buckets125(max int) []float64 {
	var b []float64
	for scale := 1; ; scale *= 10 {
		for _, m := range []int{1, 2, 5} {
			v := m * scale
			if v > max {
				return b
			}
			b = append(b, float64(v))
		}
	}
}

// vllmNames is the view that maps the OTel-legal instrument names
// "vllm.<name>" onto vLLM's "vllm:<name>"; the Prometheus exporter's
// translation strategy keeps the colon and adds _total to counters.
func vllmNames(i sdkmetric.Instrument) (sdkmetric.Stream, bool) {
	if i.Scope.Name != meterName || !strings.HasPrefix(i.Name, "vllm.") {
		return sdkmetric.Stream{}, false
	}
	return sdkmetric.Stream{
		Name:        "vllm:" + strings.TrimPrefix(i.Name, "vllm."),
		Description: i.Description,
		Unit:        i.Unit,
	}, true
}

// The labels of every series.
const (
	labelModelName = "model_name"
	labelEngine    = "engine"
)

// isSeriesLabel selects the resource attributes exported as labels.
func isSeriesLabel(kv attribute.KeyValue) bool {
	return kv.Key == labelModelName || kv.Key == labelEngine
}

// metrics records vLLM's metrics. It is fed by the engine hooks and the
// HTTP hook and works whether or not tracing is on.
type metrics struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler

	base    metric.MeasurementOption
	reasons map[scheduler.FinishReason][]metric.AddOption
	// rec holds base as a ready variadic argument: passing an existing
	// slice spares the allocation of one per measurement.
	rec []metric.RecordOption

	gauges                                      queueGauges
	totals                                      counterTotals
	success                                     metric.Int64Counter
	ttft, itl, tpot, e2e, queue                 metric.Float64Histogram
	inference, prefill, decode                  metric.Float64Histogram
	promptHist, generationHist, iterationTokens metric.Int64Histogram
	paramsN, paramsMaxTokens                    metric.Int64Histogram
	stepSchedule, stepPrepare, stepForward      metric.Float64Histogram
	stepSample                                  metric.Float64Histogram
	mu                                          sync.Mutex
	reqs                                        map[string]*requestMetrics
	lastPrefixQueries, lastPrefixHits           uint64
}

// queueGauges holds the latest values of the queue and KV gauges. The
// engine stores them at every step; the exporter reads them when /metrics
// is scraped (observable gauges). Recording each through the SDK cost six
// Records per step, about a third of the metrics' cost per step.
type queueGauges struct {
	running, waiting atomic.Int64
	kvUsage          atomic.Uint64 // math.Float64bits
	kvCachedFree     atomic.Uint64 // math.Float64bits: cached free blocks / usable blocks
}

// setKV stores what only the scheduler's Stats carry: the share of usable
// blocks that are free but still hold prefix-cache entries.
func (g *queueGauges) setKV(st scheduler.Stats) {
	share := 0.0
	if st.KVBlocksTotal > 0 {
		share = float64(st.KVBlocksCachedFree) / float64(st.KVBlocksTotal)
	}
	g.kvCachedFree.Store(math.Float64bits(share))
}

func (g *queueGauges) set(running, waiting int, kvUsage float64) {
	g.running.Store(int64(running))
	g.waiting.Store(int64(waiting))
	g.kvUsage.Store(math.Float64bits(kvUsage))
}

// counterTotals holds the running totals of the counters the engine bumps
// at every step or request; the exporter reads them when /metrics is
// scraped (observable counters), as it reads the gauges. Adding to each
// through the SDK cost two to four Adds per step, each a lookup of the
// attribute set's aggregate.
type counterTotals struct {
	engineSteps, generationTokens, promptTokens atomic.Int64
	prefixQueries, prefixHits, preemptions      atomic.Int64
	resumes                                     atomic.Int64 // the scheduler's cumulative count
}

// requestMetrics is what per-token metrics need of a live request.
type requestMetrics struct {
	arrival   time.Time
	prompt    int
	tokens    int
	lastToken time.Time
}

func newMetrics(c Config) (*metrics, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithoutScopeInfo(),
		otelprom.WithoutTargetInfo(),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithResourceAsConstantLabels(isSeriesLabel),
	)
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	// model_name and engine are the same on every series: they are the
	// meter provider's resource, exported as constant labels, rather than
	// attributes of each measurement, which the SDK would normalise on
	// every Record (half of the metrics' cost per engine step).
	res := resource.NewSchemaless(attribute.String(labelModelName, c.ModelName), attribute.String(labelEngine, c.EngineID))
	// Exemplars off: measurements carry no trace context (the default
	// filter would never keep one), and vLLM's metrics have none; the filter
	// and reservoir still cost every Record.
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithView(vllmNames), sdkmetric.WithResource(res),
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	m := &metrics{
		provider: mp,
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		reqs:     make(map[string]*requestMetrics),
	}
	m.base = metric.WithAttributeSet(*attribute.EmptySet())
	m.rec = []metric.RecordOption{m.base}
	m.reasons = make(map[scheduler.FinishReason][]metric.AddOption)
	for _, r := range []scheduler.FinishReason{scheduler.FinishStop, scheduler.FinishLength, scheduler.FinishAbort, scheduler.FinishError} {
		m.reasons[r] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("finished_reason", string(r))))}
	}
	if err := m.createInstruments(mp.Meter(meterName), c.MaxModelLen); err != nil {
		return nil, err
	}
	m.initSeries()
	return m, nil
}

// initSeries exposes request_success at zero from startup for every
// finished_reason, as upstream does, so that rate() and absent() work
// before the first request. (The observable counters and gauges are
// exposed from startup anyway.)
func (m *metrics) initSeries() {
	for _, opt := range m.reasons {
		m.success.Add(context.Background(), 0, opt...)
	}
}

// instrumentBuilder collects the first instrument-creation error.
type instrumentBuilder struct {
	meter metric.Meter
	err   error
}

func (b *instrumentBuilder) keep(err error) {
	if b.err == nil && err != nil {
		b.err = err
	}
}

func (b *instrumentBuilder) counter(name, desc string) metric.Int64Counter {
	c, err := b.meter.Int64Counter(name, metric.WithDescription(desc))
	b.keep(err)
	return c
}

func (b *instrumentBuilder) seconds(name, desc string, bounds []float64) metric.Float64Histogram {
	h, err := b.meter.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(bounds...))
	b.keep(err)
	return h
}

func (b *instrumentBuilder) count(name, desc string, bounds []float64) metric.Int64Histogram {
	h, err := b.meter.Int64Histogram(name, metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(bounds...))
	b.keep(err)
	return h
}

// intTotal registers an observable counter whose cumulative total load
// reads when the exporter collects.
func (b *instrumentBuilder) intTotal(name, desc string, opt metric.ObserveOption, load func() int64) {
	_, err := b.meter.Int64ObservableCounter(name, metric.WithDescription(desc), metric.WithInt64Callback(observeInt(opt, load)))
	b.keep(err)
}

// intGauge and floatGauge register observable gauges that read load when
// the exporter collects.
func (b *instrumentBuilder) intGauge(name, desc string, opt metric.ObserveOption, load func() int64) {
	_, err := b.meter.Int64ObservableGauge(name, metric.WithDescription(desc), metric.WithInt64Callback(observeInt(opt, load)))
	b.keep(err)
}

func (b *instrumentBuilder) floatGauge(name, desc string, opt metric.ObserveOption, load func() float64) {
	_, err := b.meter.Float64ObservableGauge(name, metric.WithDescription(desc),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			o.Observe(load(), opt)
			return nil
		}))
	b.keep(err)
}

// observeInt is the callback of an observable instrument that reports load.
func observeInt(opt metric.ObserveOption, load func() int64) metric.Int64Callback {
	return func(_ context.Context, o metric.Int64Observer) error {
		o.Observe(load(), opt)
		return nil
	}
}

func (m *metrics) createInstruments(meter metric.Meter, maxModelLen int) error {
	b := &instrumentBuilder{meter: meter}
	b.intGauge("vllm.num_requests_running", "Number of requests in model execution batches.", m.base, m.gauges.running.Load)
	b.intGauge("vllm.num_requests_waiting", "Number of requests waiting to be processed.", m.base, m.gauges.waiting.Load)
	b.floatGauge("vllm.kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", m.base,
		func() float64 { return math.Float64frombits(m.gauges.kvUsage.Load()) })
	t := &m.totals
	b.intTotal("vllm.prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", m.base, t.prefixQueries.Load)
	b.intTotal("vllm.prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", m.base, t.prefixHits.Load)
	b.intTotal("vllm.num_preemptions", "Cumulative number of preemptions from the engine.", m.base, t.preemptions.Load)
	b.intTotal("vllm.num_resumes", "Cumulative number of preempted requests scheduled again (preempt/resume cycles).", m.base, t.resumes.Load)
	b.floatGauge("vllm.kv_cache_cached_free_perc", "Free KV blocks that still hold prefix-cache entries, as a share of usable blocks (not in kv_cache_usage_perc). 1 means 100 percent.", m.base,
		func() float64 { return math.Float64frombits(m.gauges.kvCachedFree.Load()) })
	b.intTotal("vllm.prompt_tokens", "Number of prefill tokens processed.", m.base, t.promptTokens.Load)
	b.intTotal("vllm.generation_tokens", "Number of generation tokens processed.", m.base, t.generationTokens.Load)
	b.intTotal("vllm.engine_steps", "Number of scheduler steps executed by the engine.", m.base, t.engineSteps.Load)
	m.success = b.counter("vllm.request_success", "Count of successfully processed requests.")
	m.ttft = b.seconds("vllm.time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttftBuckets)
	m.itl = b.seconds("vllm.inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itlBuckets)
	m.tpot = b.seconds("vllm.request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.", itlBuckets)
	m.e2e = b.seconds("vllm.e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", requestLatencyBuckets)
	m.queue = b.seconds("vllm.request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", requestLatencyBuckets)
	m.inference = b.seconds("vllm.request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", requestLatencyBuckets)
	m.prefill = b.seconds("vllm.request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", requestLatencyBuckets)
	m.decode = b.seconds("vllm.request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", requestLatencyBuckets)
	tokens := buckets125(maxModelLen)
	m.promptHist = b.count("vllm.request_prompt_tokens", "Number of prefill tokens processed.", tokens)
	m.generationHist = b.count("vllm.request_generation_tokens", "Number of generation tokens processed.", tokens)
	m.iterationTokens = b.count("vllm.iteration_tokens_total", "Histogram of number of tokens per engine_step.", iterationTokenBuckets)
	m.paramsN = b.count("vllm.request_params_n", "Histogram of the n request parameter.", paramsNBuckets)
	m.paramsMaxTokens = b.count("vllm.request_params_max_tokens", "Histogram of the max_tokens request parameter.", tokens)
	m.stepSchedule = b.seconds("vllm.step_schedule_time_seconds", "Histogram of scheduler time per engine step (CPU).", stepTimeBuckets)
	m.stepPrepare = b.seconds("vllm.step_prepare_time_seconds", "Histogram of input preparation time per engine step.", stepTimeBuckets)
	m.stepForward = b.seconds("vllm.step_forward_time_seconds", "Histogram of model forward time per engine step (device time where measured).", stepTimeBuckets)
	m.stepSample = b.seconds("vllm.step_sample_time_seconds", "Histogram of sampling time per engine step (device time where measured).", stepTimeBuckets)
	return b.err
}

// requestStarted creates the per-request state of token metrics.
func (m *metrics) requestStarted(rs engine.RequestStart) {
	arrival := rs.Arrival
	if arrival.IsZero() {
		arrival = time.Now()
	}
	m.mu.Lock()
	m.reqs[rs.ID] = &requestMetrics{arrival: arrival, prompt: rs.NumPromptTokens}
	m.mu.Unlock()
}

// preempted counts a preemption directly (the fork never did).
func (m *metrics) preempted() { m.totals.preemptions.Add(1) }

// stepBuilt refreshes the queue and KV gauges from the scheduler.
func (m *metrics) stepBuilt(v scheduler.StepView) {
	m.gauges.set(v.NumRunning(), v.NumWaiting(), v.KVUsage())
}

// step records one executed step: step counters and times, gauges, prefix
// cache counters, generated tokens, TTFT and inter-token latency.
func (m *metrics) step(rec *engine.StepRecord) {
	ctx := context.Background()
	m.totals.engineSteps.Add(1)
	m.iterationTokens.Record(ctx, int64(rec.NumScheduledTokens), m.rec...)
	m.stepSchedule.Record(ctx, rec.Schedule.Seconds(), m.rec...)
	m.stepPrepare.Record(ctx, rec.Prepare.Seconds(), m.rec...)
	m.stepForward.Record(ctx, rec.Forward.Seconds(), m.rec...)
	m.stepSample.Record(ctx, rec.Sample.Seconds(), m.rec...)
	st := rec.Stats
	m.gauges.set(st.NumRunning, st.NumWaiting, st.KVUsage)
	m.gauges.setKV(st)
	m.totals.resumes.Store(int64(st.NumResumes))
	at := rec.End
	if at.IsZero() {
		at = time.Now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := st.PrefixCacheQueries - m.lastPrefixQueries; st.PrefixCacheQueries >= m.lastPrefixQueries && d > 0 {
		m.totals.prefixQueries.Add(int64(d))
	}
	if d := st.PrefixCacheHits - m.lastPrefixHits; st.PrefixCacheHits >= m.lastPrefixHits && d > 0 {
		m.totals.prefixHits.Add(int64(d))
	}
	m.lastPrefixQueries, m.lastPrefixHits = st.PrefixCacheQueries, st.PrefixCacheHits
	var generated int
	for i := range rec.Outputs {
		o := &rec.Outputs[i]
		n := len(o.NewTokenIDs)
		generated += n
		if r := m.reqs[o.ID]; r != nil && n > 0 {
			m.tokensLocked(ctx, r, n, at)
		}
	}
	if generated > 0 {
		m.totals.generationTokens.Add(int64(generated))
	}
}

// tokensLocked records n new tokens of r produced at at.
func (m *metrics) tokensLocked(ctx context.Context, r *requestMetrics, n int, at time.Time) {
	if r.tokens == 0 {
		m.ttft.Record(ctx, at.Sub(r.arrival).Seconds(), m.rec...)
		m.totals.promptTokens.Add(int64(r.prompt))
	} else {
		m.itl.Record(ctx, at.Sub(r.lastToken).Seconds(), m.rec...)
	}
	r.tokens += n
	r.lastToken = at
}

// requestEnded records the per-request histograms and releases the state.
// Tokens the step hook has not seen yet (the hooks' order is not fixed) are
// accounted here from the engine's timestamps.
func (m *metrics) requestEnded(re engine.RequestEnd) {
	ctx := context.Background()
	st := re.Stats // the request's blocks freed: an abort between steps shows at once
	m.gauges.set(st.NumRunning, st.NumWaiting, st.KVUsage)
	m.gauges.setKV(st)
	m.mu.Lock()
	r := m.reqs[re.ID]
	delete(m.reqs, re.ID)
	if r != nil && re.NumOutputTokens > r.tokens {
		at := re.Times.LastToken
		if r.tokens == 0 && !re.Times.FirstToken.IsZero() {
			at = re.Times.FirstToken
		}
		if !at.IsZero() {
			m.tokensLocked(ctx, r, re.NumOutputTokens-r.tokens, at)
		}
	}
	m.mu.Unlock()

	if opt, ok := m.reasons[re.Reason]; ok {
		m.success.Add(ctx, 1, opt...)
	}
	t := re.Times
	has := func(ts ...time.Time) bool {
		for _, x := range ts {
			if x.IsZero() {
				return false
			}
		}
		return true
	}
	if has(t.Arrival, t.Finished) {
		m.e2e.Record(ctx, t.E2E().Seconds(), m.rec...)
	}
	if has(t.Arrival, t.Scheduled) {
		m.queue.Record(ctx, t.QueueTime().Seconds(), m.rec...)
	}
	if has(t.Scheduled, t.FirstToken) {
		m.prefill.Record(ctx, t.Prefill().Seconds(), m.rec...)
	}
	if has(t.FirstToken, t.LastToken) {
		m.decode.Record(ctx, t.Decode().Seconds(), m.rec...)
		if re.NumOutputTokens > 1 {
			m.tpot.Record(ctx, t.Decode().Seconds()/float64(re.NumOutputTokens-1), m.rec...)
		}
	}
	if has(t.Scheduled, t.LastToken) {
		m.inference.Record(ctx, t.Inference().Seconds(), m.rec...)
	}
	m.promptHist.Record(ctx, int64(re.NumPromptTokens), m.rec...)
	m.generationHist.Record(ctx, int64(re.NumOutputTokens), m.rec...)
	if re.MaxTokens > 0 {
		m.paramsMaxTokens.Record(ctx, int64(re.MaxTokens), m.rec...)
	}
}

// requestParamsN records an API request's n parameter.
func (m *metrics) requestParamsN(n int) {
	if n > 0 {
		m.paramsN.Record(context.Background(), int64(n), m.rec...)
	}
}

// forget drops every request's state (shutdown).
func (m *metrics) forget() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.reqs)
}

// live is the number of requests with metric state.
func (m *metrics) live() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.reqs)
}

// observeExport exposes the export processor's state (read by state at
// each scrape) under the OpenTelemetry SDK's own metric names, those its
// batch span processor and OTLP exporters report (there only behind
// OTEL_GO_X_OBSERVABILITY), so that an operator sees dropped and unsent
// spans, which otherwise only the rate-limited logs mention:
//
//   - otel.sdk.processor.span.processed: spans taken into the export queue,
//     and with error.type queue_full those dropped because it was full;
//   - otel.sdk.processor.span.queue.size and .capacity, in spans;
//   - otel.sdk.exporter.span.exported: spans the collector took, and with
//     error.type (exportErrorType) those whose upload failed.
//
// The processor takes the batch span processor's place, hence its
// component type; protocol names the exporter's.
func (m *metrics) observeExport(state func() exportState, protocol string) error {
	meter := m.provider.Meter(meterName)
	b := &instrumentBuilder{meter: meter}
	processed := b.semconvCounter(otelconv.SDKProcessorSpanProcessed{})
	queueSize := b.semconvUpDown(otelconv.SDKProcessorSpanQueueSize{})
	queueCap := b.semconvUpDown(otelconv.SDKProcessorSpanQueueCapacity{})
	exported := b.semconvCounter(otelconv.SDKExporterSpanExported{})
	if b.err != nil {
		return b.err
	}
	proc := []attribute.KeyValue{
		semconv.OTelComponentTypeBatchingSpanProcessor,
		semconv.OTelComponentName(semconv.OTelComponentTypeBatchingSpanProcessor.Value.AsString() + "/0"),
	}
	exporterType := semconv.OTelComponentTypeOtlpGRPCSpanExporter
	if protocol == ProtocolHTTPProtobuf {
		exporterType = semconv.OTelComponentTypeOtlpHTTPSpanExporter
	}
	exp := []attribute.KeyValue{exporterType, semconv.OTelComponentName(exporterType.Value.AsString() + "/0")}
	procOK := metric.WithAttributeSet(attribute.NewSet(proc...))
	procFull := metric.WithAttributeSet(attribute.NewSet(append(proc, semconv.ErrorTypeKey.String("queue_full"))...))
	expOK := metric.WithAttributeSet(attribute.NewSet(exp...))
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := state()
		o.ObserveInt64(processed, s.queued, procOK)
		o.ObserveInt64(processed, s.dropped, procFull)
		o.ObserveInt64(queueSize, s.queueSpans, procOK)
		o.ObserveInt64(queueCap, s.queueCapacity, procOK)
		o.ObserveInt64(exported, s.sent, expOK)
		for typ, n := range s.failed {
			o.ObserveInt64(exported, n, metric.WithAttributes(append(exp, semconv.ErrorTypeKey.String(typ))...))
		}
		return nil
	}, processed, queueSize, queueCap, exported)
	return err
}

// semconvCounter and semconvUpDown register observable instruments of a
// metric of the semantic conventions (otelconv), with its name, unit and
// description; the callback is registered separately.
func (b *instrumentBuilder) semconvCounter(m semconvMetric) metric.Int64ObservableCounter {
	c, err := b.meter.Int64ObservableCounter(m.Name(), metric.WithUnit(m.Unit()), metric.WithDescription(m.Description()))
	b.keep(err)
	return c
}

func (b *instrumentBuilder) semconvUpDown(m semconvMetric) metric.Int64ObservableUpDownCounter {
	c, err := b.meter.Int64ObservableUpDownCounter(m.Name(), metric.WithUnit(m.Unit()), metric.WithDescription(m.Description()))
	b.keep(err)
	return c
}

// semconvMetric is a metric of the semantic conventions (otelconv).
type semconvMetric interface {
	Name() string
	Unit() string
	Description() string
}
