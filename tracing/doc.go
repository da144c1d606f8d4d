// Package tracing owns vserve's observability: one OpenTelemetry
// TracerProvider per process, journey tracing (llm_request and llm_core
// spans with api.* and journey.* events), step tracing (scheduler_steps_<k>
// windows with step.BATCH_SUMMARY and step.REQUEST_SNAPSHOT events carrying
// scheduler and device time side by side) and the Prometheus metrics with
// vLLM's names. The names and semantics are fixed by
// spec/observability.md; names.go lists them.
//
// # Wiring (cmd/vserve)
//
//	cfg := tracing.DefaultConfig()
//	cfg.RegisterFlags(flag.CommandLine) // --otlp-traces-endpoint, --enable-journey-tracing, ...
//	flag.Parse()
//	cfg.ModelName, cfg.MaxModelLen = servedModelName, maxModelLen
//	tel, err := tracing.Setup(ctx, cfg) // startup error on bad flags or protocol
//	defer tel.Shutdown(shutdownCtx)    // after the engine and server stopped
//
//	engCfg.Hooks = tel.EngineHooks()   // Observer, OnStep, OnRequestStart, OnRequestEnd
//	srvCfg.Telemetry = tel.HTTP()      // server.Telemetry: llm_request and api.* events
//	mux.Handle("GET /metrics", tel.MetricsHandler())
//
// Metrics are fed by the engine hooks whether or not tracing is on; tracing
// is on when an OTLP endpoint is set. Every hook is non-blocking: spans go
// to a batch span processor with a bounded queue that drops when full, so a
// collector that is down or slow never slows serving.
//
// # State
//
// Per-request tracing state exists only for sampled requests (llm_request
// spans keyed by a server-generated id, llm_core spans keyed by the engine
// request id) and is released by one idempotent cleanup on every path;
// request metrics keep four fields per live request, released by
// OnRequestEnd. Shutdown ends every open span.
package tracing
