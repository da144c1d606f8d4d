package bench

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ServerCounters are the server-side counters read from /metrics.
type ServerCounters struct {
	PrefixQueries float64
	PrefixHits    float64
	Preemptions   float64
}

// Sub returns c - o, for a before/after difference.
func (c ServerCounters) Sub(o ServerCounters) ServerCounters {
	return ServerCounters{c.PrefixQueries - o.PrefixQueries, c.PrefixHits - o.PrefixHits, c.Preemptions - o.Preemptions}
}

// HitRate is hits / queries (0 when there were no queries).
func (c ServerCounters) HitRate() float64 {
	if c.PrefixQueries <= 0 {
		return 0
	}
	return c.PrefixHits / c.PrefixQueries
}

// ScrapeCounters reads vLLM's prefix-cache and preemption counters from a
// Prometheus text exposition at baseURL/metrics, summing over label sets.
func ScrapeCounters(ctx context.Context, hc *http.Client, baseURL string) (ServerCounters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(baseURL, "/")+"/metrics", nil)
	if err != nil {
		return ServerCounters{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return ServerCounters{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ServerCounters{}, fmt.Errorf("bench: /metrics answered %d", resp.StatusCode)
	}
	return ParseCounters(resp.Body)
}

// ParseCounters parses a Prometheus text exposition.
func ParseCounters(r interface{ Read([]byte) (int, error) }) (ServerCounters, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return ServerCounters{}, fmt.Errorf("bench: /metrics: %w", err)
	}
	sum := func(names ...string) float64 {
		total := 0.0
		for _, n := range names {
			if f, ok := families[n]; ok {
				for _, m := range f.GetMetric() {
					total += m.GetCounter().GetValue() + m.GetUntyped().GetValue()
				}
			}
		}
		return total
	}
	return ServerCounters{
		PrefixQueries: sum("vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries"),
		PrefixHits:    sum("vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits"),
		Preemptions:   sum("vllm:num_preemptions_total", "vllm:num_preemptions"),
	}, nil
}
