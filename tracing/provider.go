package tracing

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// defaultExportTimeout bounds one upload of the export processor; its
// goroutine is the only one that waits on the collector.
const defaultExportTimeout = 10 * time.Second

// newTracerProvider builds the process's single TracerProvider: the OTLP
// export processor with its bounded, non-blocking queue (or the test
// processors), service.name, and the raised event limit. sole is the
// export processor when it is the provider's only processor (span events
// are then encoded for it directly: eventSink), else nil; otlp is the one
// exporting to --otlp-traces-endpoint, if any (its state is on /metrics).
// The direct encoding applies no limits of its own, so it is used only
// when the span limits (OTEL_SPAN_ATTRIBUTE_* and
// OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT) cannot trim what it encodes: otherwise
// everything goes through the SDK, which applies them.
func newTracerProvider(ctx context.Context, c Config) (tp *sdktrace.TracerProvider, res *resource.Resource, sole, otlp *exportProcessor, err error) {
	res = resource.NewSchemaless(attribute.String("service.name", c.serviceName()))
	limits := sdktrace.NewSpanLimits()
	limits.EventCountLimit = c.MaxEventsPerSpan
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithRawSpanLimits(limits),
	}
	procs := c.SpanProcessors
	if c.OTLPTracesEndpoint != "" {
		p, err := newOTLPProcessor(ctx, c)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		otlp, _ = p.(*exportProcessor)
		procs = append(procs[:len(procs):len(procs)], p)
	}
	for _, p := range procs {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	if len(procs) == 1 && limitsKeepAll(limits) {
		sole, _ = procs[0].(*exportProcessor)
	}
	return sdktrace.NewTracerProvider(opts...), res, sole, otlp, nil
}

// newOTLPProcessor creates the span processor that exports to the
// configured collector: exportProcessor over the stock OTLP client of the
// configured protocol, or, when c.stockTransform is set (the overhead
// benchmark compares them), the SDK's batch span processor and the stock
// otlptrace.Exporter over the same client. Both queue at most
// c.MaxExportQueue spans and drop beyond it, never blocking. Neither client
// dials at creation: a collector that is down costs nothing at startup.
func newOTLPProcessor(ctx context.Context, c Config) (sdktrace.SpanProcessor, error) {
	client, lent, err := newOTLPClient(c, !c.stockTransform)
	if err != nil {
		return nil, err
	}
	if !c.stockTransform {
		return newExportProcessor(ctx, client, lent, c)
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, err
	}
	return sdktrace.NewBatchSpanProcessor(exp,
		sdktrace.WithMaxQueueSize(c.MaxExportQueue),
		sdktrace.WithMaxExportBatchSize(exportBatchSpans(c.MaxExportQueue)),
		sdktrace.WithExportTimeout(c.ExportTimeout),
	), nil
}

// newOTLPClient creates the stock client of the configured protocol; with
// lend, a gRPC client's connection sends the export processor's encoded
// spans without copying them (spanCodec), and lent counts what it holds.
func newOTLPClient(c Config, lend bool) (client otlptrace.Client, lent *lentBuffers, err error) {
	target, err := parseEndpoint(c.OTLPTracesEndpoint)
	if err != nil {
		return nil, nil, err
	}
	switch p := c.protocol(); p {
	case ProtocolGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(target.hostPort), otlptracegrpc.WithTimeout(c.ExportTimeout)}
		if target.insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if lend {
			codec, dial := newSpanCodec()
			opts, lent = append(opts, otlptracegrpc.WithDialOption(dial)), codec.lent
		}
		return otlptracegrpc.NewClient(opts...), lent, nil
	case ProtocolHTTPProtobuf:
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(target.hostPort), otlptracehttp.WithTimeout(c.ExportTimeout)}
		if target.insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if target.urlPath != "" {
			opts = append(opts, otlptracehttp.WithURLPath(target.urlPath))
		}
		return otlptracehttp.NewClient(opts...), nil, nil
	default:
		return nil, nil, fmt.Errorf("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL %q: want %q or %q", p, ProtocolGRPC, ProtocolHTTPProtobuf)
	}
}

// otlpTarget is a parsed --otlp-traces-endpoint.
type otlpTarget struct {
	hostPort string
	insecure bool
	urlPath  string // http/protobuf only; empty: the exporter's /v1/traces
}

// parseEndpoint accepts "host:port", "http://host:port[/path]" and
// "https://host:port[/path]" (vLLM users pass both forms). Plain host:port
// and http:// are insecure (the usual local collector); https:// uses TLS.
func parseEndpoint(e string) (otlpTarget, error) {
	if !strings.Contains(e, "://") {
		return otlpTarget{hostPort: e, insecure: true}, nil
	}
	u, err := url.Parse(e)
	if err != nil {
		return otlpTarget{}, fmt.Errorf("--otlp-traces-endpoint: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return otlpTarget{}, fmt.Errorf("--otlp-traces-endpoint %q: want host:port or http(s)://host:port", e)
	}
	path := strings.TrimSuffix(u.Path, "/")
	return otlpTarget{hostPort: u.Host, insecure: u.Scheme == "http", urlPath: path}, nil
}

// directMaxAttributes is more than the most attributes any vserve event
// (step.BATCH_SUMMARY: 19) or span (llm_request: 15) has.
const directMaxAttributes = 32

// limitsKeepAll reports whether limits leave every attribute of vserve's
// spans and span events whole: values of any length and room for
// directMaxAttributes attributes (a negative limit means none).
func limitsKeepAll(l sdktrace.SpanLimits) bool {
	room := func(limit int) bool { return limit < 0 || limit >= directMaxAttributes }
	return l.AttributeValueLengthLimit < 0 && room(l.AttributeCountLimit) && room(l.AttributePerEventCountLimit)
}
