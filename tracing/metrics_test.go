package tracing

import (
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/scheduler"
)

// scrape fetches /metrics and parses it with Prometheus's own parser.
func scrape(t *testing.T, tel *Telemetry) map[string]*dto.MetricFamily {
	t.Helper()
	rr := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 200, rr.Code)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rr.Body)
	require.NoError(t, err, rr.Body.String())
	return fams
}

// driveTraffic runs requests through the hooks as the engine would, with
// tracing off: metrics must not depend on it.
// metricsTelemetry is a Telemetry with metrics only, shut down at the end
// of the test.
func metricsTelemetry(t *testing.T) *Telemetry {
	t.Helper()
	c := DefaultConfig()
	c.ModelName, c.MaxModelLen = "stories260K", 512
	tel, err := Setup(t.Context(), c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(t.Context()) })
	return tel
}

func driveTraffic(t *testing.T) *Telemetry {
	tel := metricsTelemetry(t)
	h := &harness{t: t, tel: tel, obs: tel.SchedulerObserver()}
	step := uint64(0)
	for i, reason := range []scheduler.FinishReason{scheduler.FinishStop, scheduler.FinishLength, scheduler.FinishAbort, scheduler.FinishStop} {
		f := h.newFlow(fmt.Sprint(i), 10, 3, nil)
		step++
		out, v := batch(step)
		h.obs.StepBuilt(out, v)
		f.schedule(step, false, 10)
		if i == 1 {
			f.preempt(step)
			f.schedule(step, true, 10)
		}
		for k := range 3 {
			f.token(step)
			tokens := []int32{1}
			h.tel.OnStep(&engine.StepRecord{Step: step, End: time.Now(), NumScheduledTokens: 10 - 9*min(k, 1),
				Forward: time.Millisecond, Outputs: []scheduler.RequestOutput{{ID: f.req.id, Step: step, NewTokenIDs: tokens}},
				Stats: scheduler.Stats{NumRunning: 1, NumWaiting: 2, KVUsage: 0.5, PrefixCacheQueries: step * 10, PrefixCacheHits: step * 4,
					KVBlocksTotal: 64, KVBlocksFree: 32, KVBlocksCachedFree: 16, NumResumes: step / 4}})
			step++
		}
		f.complete(step, reason, 3)
	}
	h.requireNoState()
	return tel
}

func TestMetricsExposition(t *testing.T) {
	fams := scrape(t, driveTraffic(t))
	want := map[string]dto.MetricType{
		"vllm:num_requests_running":                  dto.MetricType_GAUGE,
		"vllm:num_requests_waiting":                  dto.MetricType_GAUGE,
		"vllm:kv_cache_usage_perc":                   dto.MetricType_GAUGE,
		"vllm:prefix_cache_queries_total":            dto.MetricType_COUNTER,
		"vllm:prefix_cache_hits_total":               dto.MetricType_COUNTER,
		"vllm:num_preemptions_total":                 dto.MetricType_COUNTER,
		"vllm:num_resumes_total":                     dto.MetricType_COUNTER,
		"vllm:kv_cache_cached_free_perc":             dto.MetricType_GAUGE,
		"vllm:prompt_tokens_total":                   dto.MetricType_COUNTER,
		"vllm:generation_tokens_total":               dto.MetricType_COUNTER,
		"vllm:request_success_total":                 dto.MetricType_COUNTER,
		"vllm:engine_steps_total":                    dto.MetricType_COUNTER,
		"vllm:time_to_first_token_seconds":           dto.MetricType_HISTOGRAM,
		"vllm:inter_token_latency_seconds":           dto.MetricType_HISTOGRAM,
		"vllm:request_time_per_output_token_seconds": dto.MetricType_HISTOGRAM,
		"vllm:e2e_request_latency_seconds":           dto.MetricType_HISTOGRAM,
		"vllm:request_queue_time_seconds":            dto.MetricType_HISTOGRAM,
		"vllm:request_inference_time_seconds":        dto.MetricType_HISTOGRAM,
		"vllm:request_prefill_time_seconds":          dto.MetricType_HISTOGRAM,
		"vllm:request_decode_time_seconds":           dto.MetricType_HISTOGRAM,
		"vllm:request_prompt_tokens":                 dto.MetricType_HISTOGRAM,
		"vllm:request_generation_tokens":             dto.MetricType_HISTOGRAM,
		"vllm:iteration_tokens_total":                dto.MetricType_HISTOGRAM,
		"vllm:request_params_n":                      dto.MetricType_HISTOGRAM,
		"vllm:request_params_max_tokens":             dto.MetricType_HISTOGRAM,
		"vllm:step_schedule_time_seconds":            dto.MetricType_HISTOGRAM,
		"vllm:step_prepare_time_seconds":             dto.MetricType_HISTOGRAM,
		"vllm:step_forward_time_seconds":             dto.MetricType_HISTOGRAM,
		"vllm:step_sample_time_seconds":              dto.MetricType_HISTOGRAM,
	}
	var names []string
	for name := range fams {
		names = append(names, name)
	}
	for name, typ := range want {
		f, ok := fams[name]
		if !assert.True(t, ok, "missing %s (have %v)", name, names) {
			continue
		}
		assert.Equal(t, typ, f.GetType(), name)
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			assert.Equal(t, "stories260K", labels["model_name"], name)
			assert.Equal(t, "0", labels["engine"], name)
			wantLabels := 2
			if name == "vllm:request_success_total" {
				assert.Contains(t, []string{"stop", "length", "abort", "error"}, labels["finished_reason"])
				wantLabels = 3
			}
			assert.Len(t, labels, wantLabels, "%s labels %v", name, labels)
		}
	}
	assert.Len(t, fams, len(want), "no unexpected series (have %v)", names)

	counter := func(name string) float64 { return fams[name].GetMetric()[0].GetCounter().GetValue() }
	assert.Equal(t, 1.0, counter("vllm:num_preemptions_total"), "preemptions are counted")
	assert.Equal(t, 12.0, counter("vllm:generation_tokens_total"))
	assert.Equal(t, 40.0, counter("vllm:prompt_tokens_total"))
	assert.Equal(t, 12.0, counter("vllm:engine_steps_total"))
	assert.Equal(t, 150.0, counter("vllm:prefix_cache_queries_total"))
	assert.Equal(t, 60.0, counter("vllm:prefix_cache_hits_total"))
	assert.Equal(t, 3.0, counter("vllm:num_resumes_total"), "the scheduler's cumulative count: 15/4 at the last step")
	success := map[string]float64{}
	for _, m := range fams["vllm:request_success_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "finished_reason" {
				success[l.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	assert.Equal(t, map[string]float64{"stop": 2, "length": 1, "abort": 1, "error": 0}, success)

	hist := func(name string) *dto.Histogram { return fams[name].GetMetric()[0].GetHistogram() }
	assert.Equal(t, uint64(4), hist("vllm:time_to_first_token_seconds").GetSampleCount())
	assert.Equal(t, uint64(8), hist("vllm:inter_token_latency_seconds").GetSampleCount(), "two per request")
	assert.Equal(t, uint64(4), hist("vllm:request_params_n").GetSampleCount())
	assert.Zero(t, fams["vllm:kv_cache_usage_perc"].GetMetric()[0].GetGauge().GetValue(), "the last request ended: its blocks are free")
	assert.Zero(t, fams["vllm:num_requests_running"].GetMetric()[0].GetGauge().GetValue())

	buckets := map[string][]float64{
		"vllm:time_to_first_token_seconds":           ttftBuckets,
		"vllm:inter_token_latency_seconds":           itlBuckets,
		"vllm:request_time_per_output_token_seconds": itlBuckets,
		"vllm:e2e_request_latency_seconds":           requestLatencyBuckets,
		"vllm:request_queue_time_seconds":            requestLatencyBuckets,
		"vllm:iteration_tokens_total":                iterationTokenBuckets,
		"vllm:request_params_n":                      paramsNBuckets,
		"vllm:request_prompt_tokens":                 {1, 2, 5, 10, 20, 50, 100, 200, 500},
		"vllm:request_generation_tokens":             {1, 2, 5, 10, 20, 50, 100, 200, 500},
		"vllm:request_params_max_tokens":             {1, 2, 5, 10, 20, 50, 100, 200, 500},
	}
	for name, bounds := range buckets {
		var got []float64
		for _, b := range hist(name).GetBucket() {
			got = append(got, b.GetUpperBound())
		}
		got = slices.DeleteFunc(got, func(v float64) bool { return v > 1e300 }) // +Inf if present
		assert.Equal(t, bounds, got, name)
	}
}

// TestQueueGaugesFollowTheEngine: the queue and KV gauges read zero before
// any step and then the latest values, from the scheduler (StepBuilt) or
// from an executed step's stats, whichever came last.
func TestQueueGaugesFollowTheEngine(t *testing.T) {
	tel := metricsTelemetry(t)
	gauges := func() [3]float64 {
		fams := scrape(t, tel)
		value := func(name string) float64 { return fams[name].GetMetric()[0].GetGauge().GetValue() }
		return [3]float64{value("vllm:num_requests_running"), value("vllm:num_requests_waiting"), value("vllm:kv_cache_usage_perc")}
	}
	require.Equal(t, [3]float64{0, 0, 0}, gauges(), "exposed at zero from startup")

	view := &fakeStep{running: []*fakeReq{newFakeReq("a", 4, 4), newFakeReq("b", 4, 4), newFakeReq("c", 4, 4)}, waiting: 2}
	tel.SchedulerObserver().StepBuilt(&scheduler.Output{Step: 1}, view)
	require.Equal(t, [3]float64{3, 2, 0.25}, gauges(), "from the scheduler")

	tel.OnStep(&engine.StepRecord{Step: 1, Stats: scheduler.Stats{NumRunning: 1, NumWaiting: 0, KVUsage: 0.125}})
	require.Equal(t, [3]float64{1, 0, 0.125}, gauges(), "from the executed step")

	tel.OnRequestEnd(engine.RequestEnd{ID: "a", Reason: scheduler.FinishAbort, Stats: scheduler.Stats{NumWaiting: 1, KVUsage: 0.0625}})
	require.Equal(t, [3]float64{0, 1, 0.0625}, gauges(), "from a request that ended between steps")
}

func TestBuckets125(t *testing.T) {
	tests := []struct {
		max  int
		want []float64
	}{
		{1, []float64{1}},
		{4, []float64{1, 2}},
		{100, []float64{1, 2, 5, 10, 20, 50, 100}},
		{2048, []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, buckets125(tt.max), "max %d", tt.max)
	}
}

// TestCountersExposedAtZeroFromStartup: before any request every counter
// is a series at zero (request_success once per finished_reason), so that
// rate() and absent() work from the start, as upstream's do.
func TestCountersExposedAtZeroFromStartup(t *testing.T) {
	tel := metricsTelemetry(t)
	fams := scrape(t, tel)
	for _, name := range []string{"vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:num_preemptions_total",
		"vllm:num_resumes_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:engine_steps_total"} {
		require.Contains(t, fams, name)
		require.Len(t, fams[name].GetMetric(), 1, name)
		require.Zero(t, fams[name].GetMetric()[0].GetCounter().GetValue(), name)
	}
	require.Len(t, fams["vllm:request_success_total"].GetMetric(), 4, "one series per finished_reason")
}

// TestKVCachedFreeAndResumes: the share of usable KV blocks that are free
// but still cached is its own gauge (kv_cache_usage_perc counts held
// blocks only), updated by steps and by requests ending between steps;
// num_resumes_total is the scheduler's count of preempt/resume cycles.
func TestKVCachedFreeAndResumes(t *testing.T) {
	tel := metricsTelemetry(t)
	tel.OnStep(&engine.StepRecord{Step: 1, End: time.Now(),
		Stats: scheduler.Stats{KVUsage: 0.5, KVBlocksTotal: 64, KVBlocksFree: 32, KVBlocksCachedFree: 16, NumResumes: 3}})
	fams := scrape(t, tel)
	assert.Equal(t, 0.25, fams["vllm:kv_cache_cached_free_perc"].GetMetric()[0].GetGauge().GetValue())
	assert.Equal(t, 0.5, fams["vllm:kv_cache_usage_perc"].GetMetric()[0].GetGauge().GetValue())
	assert.Equal(t, 3.0, fams["vllm:num_resumes_total"].GetMetric()[0].GetCounter().GetValue())
	tel.OnRequestEnd(engine.RequestEnd{ID: "r", Reason: scheduler.FinishStop,
		Stats: scheduler.Stats{KVBlocksTotal: 64, KVBlocksFree: 64, KVBlocksCachedFree: 48}})
	fams = scrape(t, tel)
	assert.Equal(t, 0.75, fams["vllm:kv_cache_cached_free_perc"].GetMetric()[0].GetGauge().GetValue())
	assert.Equal(t, 0.0, fams["vllm:kv_cache_usage_perc"].GetMetric()[0].GetGauge().GetValue())
}
