package app

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/vserve/vserve/tracing"
)

// TestJourneyTracingWiring: with journey tracing on, one completion yields
// an llm_request span and an llm_core child in the same trace, so the trace
// headers travel from the HTTP layer through the engine to the core tracer.
func TestJourneyTracingWiring(t *testing.T) {
	exp := keepSpans{tracetest.NewInMemoryExporter()}
	cfg, err := ParseFlags([]string{"--host", "127.0.0.1", "--port", "0", "--cache-dir", t.TempDir(), "--stats-interval", "0",
		"--enable-journey-tracing", "--step-tracing-enabled", "--step-tracing-sample-rate", "1", "--step-tracing-closure-interval", "10"}, io.Discard)
	require.Error(t, err, "journey tracing without an endpoint is a startup error")
	cfg.Tracing.SpanProcessors = []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(exp)}
	require.NoError(t, cfg.Tracing.Validate())
	a, err := Start(context.Background(), cfg, NewLogger(io.Discard, cfg.LogLevel), io.Discard)
	require.NoError(t, err)
	<-a.Ready()
	require.NoError(t, a.LoadErr())
	status, m := postJSON(t, "http://"+a.Addr().String()+"/v1/completions", `{"prompt":"hi","max_tokens":4,"ignore_eos":true}`)
	require.Equal(t, 200, status, "%v", m)
	require.NoError(t, a.Shutdown(context.Background()))

	byName := map[string]tracetest.SpanStub{}
	steps := 0
	for _, s := range exp.GetSpans() {
		byName[s.Name] = s
		if s.InstrumentationScope.Name == tracing.ScopeStep {
			steps++
		}
	}
	req, ok := byName[tracing.SpanRequest]
	require.True(t, ok, "llm_request exported")
	core, ok := byName[tracing.SpanCore]
	require.True(t, ok, "llm_core exported")
	assert.Equal(t, req.SpanContext.TraceID(), core.SpanContext.TraceID())
	assert.Equal(t, req.SpanContext.SpanID(), core.Parent.SpanID())
	assert.Positive(t, steps, "step spans exported")
}

// keepSpans keeps the exported spans across Shutdown (the in-memory
// exporter clears them there).
type keepSpans struct{ *tracetest.InMemoryExporter }

func (keepSpans) Shutdown(context.Context) error { return nil }

// TestShutdownWithCollectorDown: spans that cannot reach the collector at
// shutdown are lost with a warning; the shutdown itself succeeds.
func TestShutdownWithCollectorDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	defer func(w time.Duration) { telemetryShutdownWait = w }(telemetryShutdownWait)
	telemetryShutdownWait = 200 * time.Millisecond

	a, base := startApp(t, "--otlp-traces-endpoint", down, "--enable-journey-tracing")
	require.NoError(t, a.LoadErr())
	status, m := postJSON(t, base+"/v1/completions", `{"prompt":"hi","max_tokens":4,"ignore_eos":true}`)
	require.Equal(t, 200, status, "%v", m)
	require.NoError(t, a.Shutdown(context.Background()))
}
