package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
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
