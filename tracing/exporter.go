package tracing

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// wireExporter is the SpanExporter behind the batch span processor. The
// transport is the stock OTLP client (otlptracegrpc.NewClient or
// otlptracehttp.NewClient: endpoint, TLS, headers, compression, retries,
// timeouts and the OTEL_EXPORTER_OTLP_* variables all behave as in the stock
// exporter); only the conversion of spans to protobuf differs. Each span is
// encoded by appendSpan into one buffer reused across exports and handed to
// the client as a tracepb.Span whose encoding is carried as its unknown
// fields, which proto.Marshal writes out unchanged. Resources and scopes are
// real message shells grouped as the stock exporter groups them, so the
// request on the wire is the same ExportTraceServiceRequest.
//
// Since it knows each span's encoded size, it also splits a batch into
// requests of at most maxRequestBytes of spans: collectors reject larger
// messages (the OpenTelemetry Collector's and Jaeger's OTLP gRPC receivers
// take 4 MiB by default), and step windows at high step-tracing rates make
// batches of several MiB, which would otherwise be lost whole.
type wireExporter struct {
	client          otlptrace.Client
	maxRequestBytes int

	mu      sync.Mutex // one export at a time (the processor already serialises them)
	buf     []byte     // encodings of the current export
	offsets []int      // span i is buf[offsets[i]:offsets[i+1]]
	stopped bool
}

// defaultMaxRequestBytes keeps requests under the common 4 MiB receive
// limit with room for the resource, scopes and framing.
const defaultMaxRequestBytes = 3 << 20

// maxRetainedExportBuffer is the largest encoding buffer kept between
// exports; a typical batch of 512 journey spans needs about 0.6 MB.
const maxRetainedExportBuffer = 4 << 20

// newWireExporter starts client and returns the exporter that owns it.
func newWireExporter(ctx context.Context, client otlptrace.Client) (*wireExporter, error) {
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the OTLP client: %w", err)
	}
	return &wireExporter{client: client, maxRequestBytes: defaultMaxRequestBytes}, nil
}

var errExporterStopped = errors.New("traces export: exporter is shut down")

// ExportSpans encodes spans and uploads them in as few requests as the
// size limit allows. The first failed request ends the export.
func (e *wireExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return errExporterStopped
	}
	defer e.releaseHugeBuffer()
	e.encodeAll(spans)
	shells := make([]tracepb.Span, len(spans)) // one allocation per export
	for lo := 0; lo < len(spans); {
		hi := e.requestEnd(lo)
		if req := e.request(spans[lo:hi], lo, shells); len(req) > 0 {
			if err := e.client.UploadTraces(ctx, req); err != nil {
				return fmt.Errorf("traces export: %w (%d of %d spans not sent)", err, len(spans)-lo, len(spans))
			}
		}
		lo = hi
	}
	return nil
}

// releaseHugeBuffer drops a buffer a burst of huge step windows grew.
func (e *wireExporter) releaseHugeBuffer() {
	if cap(e.buf) > maxRetainedExportBuffer {
		e.buf = nil
	}
}

// Shutdown stops the client; later exports fail.
func (e *wireExporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil
	}
	e.stopped = true
	e.buf, e.offsets = nil, nil
	return e.client.Stop(ctx)
}

// encodeAll encodes every span into e.buf (a nil span encodes as nothing).
func (e *wireExporter) encodeAll(spans []sdktrace.ReadOnlySpan) {
	e.buf, e.offsets = e.buf[:0], append(e.offsets[:0], 0)
	for _, s := range spans {
		if s != nil {
			e.buf = appendSpan(e.buf, s)
		}
		e.offsets = append(e.offsets, len(e.buf))
	}
}

// requestEnd returns the end of the request that starts at span lo: as
// many spans as fit in maxRequestBytes, and at least one.
func (e *wireExporter) requestEnd(lo int) int {
	hi := lo + 1
	for hi < len(e.offsets)-1 && e.offsets[hi+1]-e.offsets[lo] <= e.maxRequestBytes {
		hi++
	}
	return hi
}

// spanGroup is the spans of one resource and scope.
type spanGroup struct {
	res   *resource.Resource
	scope instrumentation.Scope
	spans []int // indices into the export's spans
}

// request returns the resource spans of one request holding spans, which
// start at index first of the export. The messages refer to e.buf, so they
// are valid until the next export; shells has one Span per exported span.
func (e *wireExporter) request(spans []sdktrace.ReadOnlySpan, first int, shells []tracepb.Span) []*tracepb.ResourceSpans {
	var groups []spanGroup
	for j, s := range spans {
		if s != nil {
			groups = addToGroup(groups, s, first+j)
		}
	}
	var out []*tracepb.ResourceSpans
	var outRes []*resource.Resource // the resource of each entry of out
	for gi := range groups {
		g := &groups[gi]
		k := slices.IndexFunc(outRes, func(r *resource.Resource) bool { return sameResource(r, g.res) })
		if k < 0 {
			rs := &tracepb.ResourceSpans{Resource: resourceShell(g.res)}
			if g.res != nil {
				rs.SchemaUrl = g.res.SchemaURL()
			}
			k, out, outRes = len(out), append(out, rs), append(outRes, g.res)
		}
		ss := &tracepb.ScopeSpans{Scope: scopeShell(g.scope), SchemaUrl: g.scope.SchemaURL,
			Spans: make([]*tracepb.Span, len(g.spans))}
		for j, i := range g.spans {
			shell := &shells[i]
			shell.ProtoReflect().SetUnknown(protoreflect.RawFields(e.buf[e.offsets[i]:e.offsets[i+1]]))
			ss.Spans[j] = shell
		}
		out[k].ScopeSpans = append(out[k].ScopeSpans, ss)
	}
	return out
}

// addToGroup adds span i to the group of its resource and scope (a
// process has one resource and a few scopes: a linear search suffices).
func addToGroup(groups []spanGroup, s sdktrace.ReadOnlySpan, i int) []spanGroup {
	res, scope := s.Resource(), s.InstrumentationScope()
	for gi := range groups {
		if g := &groups[gi]; sameResource(g.res, res) && g.scope == scope {
			g.spans = append(g.spans, i)
			return groups
		}
	}
	return append(groups, spanGroup{res: res, scope: scope, spans: []int{i}})
}

func sameResource(a, b *resource.Resource) bool {
	return a == b || a != nil && b != nil && a.Equivalent() == b.Equivalent()
}

// resourceShell is the Resource message of r (nil for no resource).
func resourceShell(r *resource.Resource) *resourcepb.Resource {
	if r == nil {
		return nil
	}
	m := &resourcepb.Resource{}
	m.ProtoReflect().SetUnknown(appendResource(nil, r))
	return m
}

// scopeShell is the InstrumentationScope message of s (nil for none).
func scopeShell(s instrumentation.Scope) *commonpb.InstrumentationScope {
	if s == (instrumentation.Scope{}) {
		return nil
	}
	m := &commonpb.InstrumentationScope{}
	m.ProtoReflect().SetUnknown(appendScope(nil, s))
	return m
}
