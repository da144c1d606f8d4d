package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exposition is a traced vserve's /metrics as far as lostSpans reads it.
const exposition = `# HELP otel_sdk_exporter_span_exported_total The number of spans for which the export has finished, either successful or failed.
# TYPE otel_sdk_exporter_span_exported_total counter
otel_sdk_exporter_span_exported_total{engine="0",model_name="m",otel_component_name="otlp_grpc_span_exporter/0",otel_component_type="otlp_grpc_span_exporter"} 120
otel_sdk_exporter_span_exported_total{engine="0",error_type="Unavailable",model_name="m",otel_component_name="otlp_grpc_span_exporter/0",otel_component_type="otlp_grpc_span_exporter"} 7
# HELP otel_sdk_processor_span_processed_total The number of spans for which the processing has finished, either successful or failed.
# TYPE otel_sdk_processor_span_processed_total counter
otel_sdk_processor_span_processed_total{engine="0",model_name="m",otel_component_name="batching_span_processor/0",otel_component_type="batching_span_processor"} 127
otel_sdk_processor_span_processed_total{engine="0",error_type="queue_full",model_name="m",otel_component_name="batching_span_processor/0",otel_component_type="batching_span_processor"} 30
# HELP vllm:engine_steps_total Number of scheduler steps executed by the engine.
# TYPE vllm:engine_steps_total counter
vllm:engine_steps_total{engine="0",model_name="m"} 5
`

func TestLostSpans(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"dropped and failed", exposition, 37},
		{"tracing off or an older build", "# TYPE vllm:engine_steps_total counter\nvllm:engine_steps_total{engine=\"0\"} 5\n", -1},
		{"not an exposition", "{", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(tc.body)) }))
			defer srv.Close()
			assert.Equal(t, tc.want, lostSpans(srv.URL))
		})
	}
}

// Over every cycle of rounds, each configuration runs in every position
// equally often and directly after every other configuration equally
// often, for the tool's 3 configurations, the 5 of --baseline and others.
// (The rotate-and-reverse order before held this only for a multiple of
// 2n rounds: with 5 configurations and 12 rounds, tracing off ran first
// twice, and never in some other position.)
func TestRoundOrderBalanced(t *testing.T) {
	for n := 2; n <= 7; n++ {
		cycle := orderCycle(n)
		for _, rounds := range []int{cycle, 2 * cycle} {
			pos := make([][]int, n)   // pos[config][position]
			after := make([][]int, n) // after[a][b]: b ran directly after a
			for i := range n {
				pos[i], after[i] = make([]int, n), make([]int, n)
			}
			for r := range rounds {
				order := roundOrder(n, r)
				require.ElementsMatch(t, seq(n), order, "n %d round %d is a permutation", n, r)
				for p, c := range order {
					pos[c][p]++
					if p > 0 {
						after[order[p-1]][c]++
					}
				}
			}
			for c := range n {
				for p := range n {
					assert.Equal(t, rounds/n, pos[c][p], "n %d, %d rounds: configuration %d in position %d", n, rounds, c, p)
				}
				for b := range n {
					if b != c {
						assert.Equal(t, rounds/n, after[c][b], "n %d, %d rounds: %d directly after %d", n, rounds, b, c)
					}
				}
			}
		}
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func TestBalancedRounds(t *testing.T) {
	for _, tc := range []struct{ rounds, n, want int }{
		{12, 3, 12}, {2, 3, 6}, {12, 5, 20}, {10, 5, 10}, {1, 4, 4}, {0, 3, 6}, {7, 2, 8},
	} {
		assert.Equal(t, tc.want, balancedRounds(tc.rounds, tc.n), "%d rounds, %d configurations", tc.rounds, tc.n)
	}
}
