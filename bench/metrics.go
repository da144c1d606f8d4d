package bench

import (
	"math"
	"sort"
	"time"
)

// Dist summarises a latency distribution in milliseconds.
type Dist struct {
	Mean   float64 `json:"mean_ms"`
	Median float64 `json:"median_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	Count  int     `json:"count"`
}

// SLO is a goodput objective: a request is "good" when its TTFT and TPOT
// are within the limits (zero: no limit).
type SLO struct {
	TTFT time.Duration
	TPOT time.Duration
}

// Summary holds the metrics of one run, named as `vllm bench serve` names them.
type Summary struct {
	Target          string         `json:"target"`
	Completed       int            `json:"completed"`
	Failed          int            `json:"failed"`
	ErrorsByKind    map[string]int `json:"errors_by_kind,omitempty"`
	DurationS       float64        `json:"duration_s"`
	InputTokens     int            `json:"total_input_tokens"`
	OutputTokens    int            `json:"total_output_tokens"`
	RequestRate     float64        `json:"request_throughput"`
	InputTokensPS   float64        `json:"input_throughput"`
	OutputTokensPS  float64        `json:"output_throughput"`
	TotalTokensPS   float64        `json:"total_token_throughput"`
	Goodput         *float64       `json:"request_goodput"` // nil (null) without an SLO, as in vLLM
	TTFT            Dist           `json:"ttft"`
	TPOT            Dist           `json:"tpot"`
	ITL             Dist           `json:"itl"`
	E2E             Dist           `json:"e2el"`
	Concurrency     int            `json:"max_concurrency,omitempty"`
	PrefixHitRate   float64        `json:"prefix_cache_hit_rate,omitempty"`
	Preemptions     float64        `json:"num_preemptions,omitempty"`
	ServerMetricsOK bool           `json:"server_metrics,omitempty"`
}

// TPOT is the time per output token after the first: (E2E - TTFT) / (n-1).
// It is 0 for requests with one output token.
func (r *Result) TPOT() time.Duration {
	if r.OutputTokens <= 1 {
		return 0
	}
	return (r.E2E - r.TTFT) / time.Duration(r.OutputTokens-1)
}

// Summarize computes the metrics of a run that took wall time d.
func Summarize(target string, results []Result, d time.Duration, slo SLO) Summary {
	s := Summary{Target: target, DurationS: d.Seconds()}
	var ttft, tpot, itl, e2e []float64
	good := 0
	for i := range results {
		r := &results[i]
		if !r.OK() {
			s.Failed++
			if s.ErrorsByKind == nil {
				s.ErrorsByKind = map[string]int{}
			}
			s.ErrorsByKind[r.ErrKind]++
			continue
		}
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
	return Dist{Mean: sum / float64(len(v)), Median: Percentile(v, 50), P90: Percentile(v, 90), P99: Percentile(v, 99), Count: len(v)}
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
