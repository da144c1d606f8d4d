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
//	cfg.ModelName = servedModelName   // metric label model_name
//	cfg.MaxModelLen = maxModelLen      // top of the token-count buckets (default 8192)
//	tel, err := tracing.Setup(ctx, cfg) // startup error on bad flags or protocol
//	defer tel.Shutdown(shutdownCtx)    // after the engine and server stopped
//
//	engCfg.Hooks = tel.EngineHooks()   // Observer, OnStep, OnRequestStart, OnRequestEnd
//	srvCfg.Telemetry = tel.HTTP()      // server.Telemetry: llm_request and api.* events
//	mux.Handle("GET /metrics", tel.MetricsHandler())
//
// The engine's hooks must keep their documented order: OnRequestStart before
// the scheduler's Queued for the same id, OnRequestEnd exactly once per
// request, OnStep after the step's outputs were applied. Either Finished or
// OnRequestEnd alone ends a request's journey.
//
// Metrics are fed by the engine hooks whether or not tracing is on; tracing
// is on when an OTLP endpoint is set. Every hook is non-blocking: ended
// spans go to an export processor with a bounded queue that drops when
// full, so a collector that is down or slow never slows serving.
//
// # Export
//
// The export processor (exporter.go) takes the SDK's batch span processor's
// place: it encodes each span straight into OTLP protobuf bytes when the
// span ends (otlpwire.go), queues only the bytes, and a goroutine sends them
// in batches with the stock OTLP client of the configured protocol
// (otlptracegrpc.NewClient or otlptracehttp.NewClient), so endpoint, TLS,
// headers, compression, retries and the OTEL_EXPORTER_OTLP_* variables
// behave as with the stock exporter. Over gRPC the connection's codec
// (spanCodec, grpccodec.go) sends the batch's encoded spans where they lie
// instead of marshalling a copy of each request. The stock exporter's conversion builds
// several heap objects per attribute, and the batch span processor keeps
// every ended span's snapshot on the heap until its batch is sent; together
// they were most of tracing's cost. The tests decode both encodings of the
// same spans and require them equal. Its memory is bounded: the queue holds
// at most 48 MiB of encoded spans, uploaded batches are kept for reuse up to
// as much and released after a minute unused. Its counts (spans queued,
// dropped at the full queue, sent, and lost in failed uploads) and its
// queue are on /metrics under the OpenTelemetry SDK's own metric names
// (observeExport).
//
// Spans and their events skip the SDK when the export processor is the
// provider's only processor (every running server) and the span limits
// cannot trim them: llm_request, llm_core and the step windows are made
// directly (directSpan, direct.go), their owners hold their events (and
// llm_request's attributes) as plain values, and when a span ends the
// export processor encodes it with them straight into the batch being
// filled, under its lock (eventSink.finish, exportProcessor.addDirect).
// The step, journey and API events and llm_request's attributes are
// written from one list (writeAttributes) either as attributes for the SDK
// or straight into OTLP with keys encoded once (eventKey), the encodings of
// all keys side by side in one block (keyArena). Tests that record spans
// use the SDK path, and tests replay the same journeys and steps both ways
// and compare exports.
//
// # State
//
// Per-request tracing state exists only for sampled requests and is held
// by what owns the request: the HTTP layer holds its llm_request span, and
// the engine holds its llm_core journey as the request's observer state
// (engine.Hooks.OnRequestStart returns it; the scheduler's views and
// RequestEnd hand it back), so no hook looks a request up by id. Both sit
// in reusable slots of a registry for Shutdown to end, and are released
// by one idempotent cleanup on every path;
// request metrics keep four fields per live request, released by
// OnRequestEnd. Shutdown ends every open span.
//
// # Tests
//
// Span trees, events and attributes are asserted with tracetest's span
// recorder by driving the hooks with scripted scheduler views; one test runs
// the real scheduler and engine loop. tracing/e2e/jaeger.sh checks the same
// against a real Jaeger through its query API. BenchmarkRequestOverhead
// measures the CPU cost per request, BenchmarkColdHooks the hooks' time
// with the caches evicted before each (as in a server),
// BenchmarkSpanExport the exporter and BenchmarkStepEventEncoding a step's
// events;
// tracing/e2e/overhead measures running vserve processes with and without
// tracing (docs/tracing-overhead.md has the figures).
package tracing
