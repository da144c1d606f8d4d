package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"
)

// Dist summarises a latency distribution in milliseconds, as vllm bench
// serve does: mean, median, population standard deviation (numpy's std)
// and the 90th and 99th percentiles, all 0 for no values.
type Dist struct {
	Mean   float64
	Median float64
	Std    float64
	P90    float64
	P99    float64
	Count  int // values summarised (not saved)
}

// SLO is a goodput objective: a request is "good" when its TTFT and TPOT
// are within the limits (zero: no limit).
type SLO struct {
	TTFT time.Duration
	TPOT time.Duration
}

// Summary holds the metrics of one run. Its JSON is the flat object that
// vllm bench serve saves per run (see MarshalJSON): the setup (label,
// model_id, backend, num_prompts, request_rate, burstiness,
// max_concurrency), duration, completed, failed, total_input_tokens,
// total_output_tokens, request_throughput, request_goodput,
// output_throughput, total_token_throughput, mean_, median_, std_, p90_
// and p99_ of ttft_ms, tpot_ms, itl_ms and e2el_ms, and the per-request
// arrays input_lens, output_lens, ttfts, itls, latencies, start_times and
// errors (times in seconds); vserve's additions have names vLLM does not
// use (errors_by_kind, input_throughput, server_*).
type Summary struct {
	Target string `json:"label"` // the target's name

	// Setup, filled by the caller (Summarize leaves it zero).
	ModelID        string    `json:"model_id,omitempty"`
	Backend        string    `json:"backend,omitempty"` // vLLM's names: openai (completions), openai-chat
	NumPrompts     int       `json:"num_prompts,omitempty"`
	OfferedRate    RateValue `json:"request_rate"` // requests/s asked for; +Inf ("inf"): all at once
	Burstiness     float64   `json:"burstiness,omitempty"`
	MaxConcurrency *int      `json:"max_concurrency"` // nil (null): no cap

	DurationS      float64  `json:"duration"`
	Completed      int      `json:"completed"`
	Failed         int      `json:"failed"`
	InputTokens    int      `json:"total_input_tokens"`
	OutputTokens   int      `json:"total_output_tokens"`
	RequestRate    float64  `json:"request_throughput"`
	Goodput        *float64 `json:"request_goodput"` // nil (null) without an SLO, as in vLLM
	OutputTokensPS float64  `json:"output_throughput"`
	TotalTokensPS  float64  `json:"total_token_throughput"`
	TTFT           Dist     `json:"-"` // saved as mean_ttft_ms, median_ttft_ms, ...
	TPOT           Dist     `json:"-"`
	ITL            Dist     `json:"-"`
	E2E            Dist     `json:"-"` // saved as ..._e2el_ms

	// Per request, in the order sent; failed requests have output length
	// 0 and latency 0, and their error.
	InputLens  []int       `json:"input_lens"`
	OutputLens []int       `json:"output_lens"`
	TTFTs      []float64   `json:"ttfts"`       // seconds
	ITLs       [][]float64 `json:"itls"`        // seconds
	Latencies  []float64   `json:"latencies"`   // seconds
	StartTimes []float64   `json:"start_times"` // seconds since the first request's start
	Errors     []string    `json:"errors"`

	// vserve's additions.
	ErrorsByKind  map[string]int `json:"errors_by_kind,omitempty"`
	InputTokensPS float64        `json:"input_throughput"`
	// The server's /metrics counters over the measured requests, when
	// ServerMetricsOK (they read 0 otherwise).
	ServerMetricsOK bool    `json:"server_metrics"`
	PrefixHitRate   float64 `json:"server_prefix_cache_hit_rate"`
	Preemptions     float64 `json:"server_preemptions"`
}

// RateValue is a request rate that saves +Inf as "inf", as vLLM does.
type RateValue float64

// MarshalJSON writes +Inf as "inf" and other rates as numbers.
func (r RateValue) MarshalJSON() ([]byte, error) {
	if math.IsInf(float64(r), 1) {
		return []byte(`"inf"`), nil
	}
	return json.Marshal(float64(r))
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *RateValue) UnmarshalJSON(b []byte) error {
	if string(b) == `"inf"` {
		*r = RateValue(math.Inf(1))
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*r = RateValue(f)
	return nil
}

// dists names the latency distributions as vLLM's keys do.
func (s *Summary) dists() []struct {
	name string
	d    *Dist
} {
	return []struct {
		name string
		d    *Dist
	}{{"ttft", &s.TTFT}, {"tpot", &s.TPOT}, {"itl", &s.ITL}, {"e2el", &s.E2E}}
}

// summaryFields is Summary without its methods, for the default encoding.
type summaryFields Summary

// MarshalJSON writes the flat object described at Summary (keys sorted).
func (s Summary) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(summaryFields(s))
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, nd := range s.dists() {
		for stat, v := range map[string]float64{"mean": nd.d.Mean, "median": nd.d.Median, "std": nd.d.Std, "p90": nd.d.P90, "p99": nd.d.P99} {
			if m[stat+"_"+nd.name+"_ms"], err = json.Marshal(v); err != nil {
				return nil, err
			}
		}
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON writes (Dist.Count is not saved).
func (s *Summary) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, (*summaryFields)(s)); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	get := func(key string) (float64, error) {
		var f float64
		if v, ok := all[key]; ok {
			if err := json.Unmarshal(v, &f); err != nil {
				return 0, fmt.Errorf("bench: %s: %w", key, err)
			}
		}
		return f, nil
	}
	for _, nd := range s.dists() {
		*nd.d = Dist{}
		for _, st := range []struct {
			stat string
			to   *float64
		}{{"mean", &nd.d.Mean}, {"median", &nd.d.Median}, {"std", &nd.d.Std}, {"p90", &nd.d.P90}, {"p99", &nd.d.P99}} {
			v, err := get(st.stat + "_" + nd.name + "_ms")
			if err != nil {
				return err
			}
			*st.to = v
		}
	}
	return nil
}

// TPOT is the time per output token after the first: (E2E - TTFT) / (n-1).
// It is 0 for requests with one output token.
func (r *Result) TPOT() time.Duration {
	if r.OutputTokens <= 1 {
		return 0
	}
	return (r.E2E - r.TTFT) / time.Duration(r.OutputTokens-1)
}

// Summarize computes the metrics of a run that took wall time d, with the
// per-request arrays of results in their order.
func Summarize(target string, results []Result, d time.Duration, slo SLO) Summary {
	s := Summary{Target: target, DurationS: d.Seconds()}
	var ttft, tpot, itl, e2e []float64
	good := 0
	var first time.Time
	for i := range results {
		if st := results[i].Start; !st.IsZero() && (first.IsZero() || st.Before(first)) {
			first = st
		}
	}
	n := len(results)
	s.InputLens, s.OutputLens = make([]int, n), make([]int, n)
	s.TTFTs, s.Latencies, s.StartTimes = make([]float64, n), make([]float64, n), make([]float64, n)
	s.ITLs, s.Errors = make([][]float64, n), make([]string, n)
	for i := range results {
		r := &results[i]
		s.InputLens[i] = r.PromptTokens
		s.TTFTs[i] = r.TTFT.Seconds()
		s.ITLs[i] = make([]float64, len(r.ITL))
		for j, g := range r.ITL {
			s.ITLs[i][j] = g.Seconds()
		}
		if !r.Start.IsZero() {
			s.StartTimes[i] = r.Start.Sub(first).Seconds()
		}
		s.Errors[i] = r.Err
		if !r.OK() {
			s.Failed++
			if s.ErrorsByKind == nil {
				s.ErrorsByKind = map[string]int{}
			}
			s.ErrorsByKind[r.ErrKind]++
			continue
		}
		s.OutputLens[i] = r.OutputTokens
		s.Latencies[i] = r.E2E.Seconds()
		s.Completed++
		s.InputTokens += r.PromptTokens
		s.OutputTokens += r.OutputTokens
		ttft = append(ttft, ms(r.TTFT))
		if r.OutputTokens > 1 {
			tpot = append(tpot, ms(r.TPOT()))
		}
		for _, g := range r.ITL {
			itl = append(itl, ms(g))
		}
		e2e = append(e2e, ms(r.E2E))
		if (slo.TTFT == 0 || r.TTFT <= slo.TTFT) && (slo.TPOT == 0 || r.TPOT() <= slo.TPOT) {
			good++
		}
	}
	if slo.TTFT > 0 || slo.TPOT > 0 {
		s.Goodput = new(0.0)
	}
	if sec := d.Seconds(); sec > 0 {
		s.RequestRate = float64(s.Completed) / sec
		s.InputTokensPS = float64(s.InputTokens) / sec
		s.OutputTokensPS = float64(s.OutputTokens) / sec
		s.TotalTokensPS = float64(s.InputTokens+s.OutputTokens) / sec
		if s.Goodput != nil {
			*s.Goodput = float64(good) / sec
		}
	}
	s.TTFT, s.TPOT, s.ITL, s.E2E = dist(ttft), dist(tpot), dist(itl), dist(e2e)
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func dist(v []float64) Dist {
	if len(v) == 0 {
		return Dist{}
	}
	sort.Float64s(v)
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	mean := sum / float64(len(v))
	sq := 0.0
	for _, x := range v {
		sq += (x - mean) * (x - mean)
	}
	return Dist{Mean: mean, Median: Percentile(v, 50), Std: math.Sqrt(sq / float64(len(v))),
		P90: Percentile(v, 90), P99: Percentile(v, 99), Count: len(v)}
}

// Percentile returns the p-th percentile of sorted values with linear
// interpolation between closest ranks (numpy's default).
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	pos := p / 100 * float64(n-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	if hi >= n {
		hi = n - 1
	}
	frac := pos - float64(lo)
	return sorted[lo] + (sorted[hi]-sorted[lo])*frac
}
