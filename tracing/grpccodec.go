package tracing

import (
	"sync/atomic"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// spanCodec is the gRPC codec of the OTLP gRPC client's connection. It
// marshals an export request whose spans the export processor encoded (a
// ScopeSpans carrying its spans as unknown fields: spanBatch.request) with
// the spans' bytes referenced where they lie, in the batch's buffers, and
// not copied: the stock codec copies the whole request, up to 3 MB, into a
// pooled buffer that a garbage collection empties between two uploads, so
// that every upload also faulted fresh pages in. In profiles of servers
// under load, that copy was about a tenth of tracing's CPU
// (docs/tracing-overhead.md). The bytes sent are those proto.Marshal writes
// (the tests compare them). Everything else, and the response, goes
// through the stock codec.
//
// gRPC holds the referenced bytes until it has written them, possibly past
// the call's return (a cancelled call's frames are dropped by the
// transport's writer later); lent counts them, and the export processor
// does not reuse a batch's buffers while any are held.
type spanCodec struct {
	stock encoding.CodecV2
	lent  *lentBuffers
}

// lentBuffers counts the batch buffers gRPC holds; it is also the pool the
// references are "returned" to (mem.NewBuffer), which only counts.
type lentBuffers struct{ n atomic.Int64 }

func (l *lentBuffers) Get(length int) *[]byte {
	b := make([]byte, length)
	return &b
}

func (l *lentBuffers) Put(*[]byte) { l.n.Add(-1) }

// held reports whether gRPC still holds bytes of some batch.
func (l *lentBuffers) held() bool { return l != nil && l.n.Load() > 0 }

// lend returns a reference to b that counts as held until gRPC frees it.
func (l *lentBuffers) lend(b []byte) mem.Buffer {
	l.n.Add(1)
	return mem.NewBuffer(&b, l)
}

// newSpanCodec returns the codec and the dial option that makes it the
// connection's.
func newSpanCodec() (*spanCodec, grpc.DialOption) {
	c := &spanCodec{stock: encoding.GetCodecV2(grpcproto.Name), lent: &lentBuffers{}}
	return c, grpc.WithDefaultCallOptions(grpc.ForceCodecV2(c))
}

// Name is the stock codec's: it names the content-subtype the collector
// decodes.
func (c *spanCodec) Name() string { return grpcproto.Name }

func (c *spanCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.stock.Unmarshal(data, v) }

// Marshal marshals v, referencing the encoded spans of an export request.
func (c *spanCodec) Marshal(v any) (mem.BufferSlice, error) {
	req, ok := v.(*coltracepb.ExportTraceServiceRequest)
	if !ok || len(req.ProtoReflect().GetUnknown()) > 0 {
		return c.stock.Marshal(v)
	}
	var w slicedWriter
	for _, rs := range req.ResourceSpans {
		if err := w.resourceSpans(rs, c.lent); err != nil {
			w.out.Free()
			return nil, err
		}
	}
	return w.finish(), nil
}

// slicedWriter builds a message as a sequence of buffers: bytes it writes
// itself, and references to large byte slices that stay where they are.
type slicedWriter struct {
	head []byte // written since the last reference
	out  mem.BufferSlice
}

// minLent is the least size of spans referenced rather than copied.
const minLent = 4 << 10

// Field numbers of ExportTraceServiceRequest and ResourceSpans
// (opentelemetry-proto collector/trace/v1 and trace/v1).
const (
	requestResourceSpans    protowire.Number = 1
	resourceSpansResource   protowire.Number = 1
	resourceSpansScopeSpans protowire.Number = 2
	resourceSpansSchemaURL  protowire.Number = 3
)

// resourceSpans writes ExportTraceServiceRequest.resource_spans rs as
// proto.Marshal writes it (fields in number order, each message's unknown
// fields last), with each ScopeSpans' unknown fields, the encoded spans,
// referenced.
func (w *slicedWriter) resourceSpans(rs *tracepb.ResourceSpans, lent *lentBuffers) error {
	if len(rs.ProtoReflect().GetUnknown()) > 0 {
		return w.copied(requestResourceSpans, rs) // not the export processor's: no spans to reference
	}
	var resource []byte
	if rs.Resource != nil {
		b, err := proto.Marshal(rs.Resource)
		if err != nil {
			return err
		}
		resource = appendBytes(appendTag(nil, resourceSpansResource, protowire.BytesType), b)
	}
	schema := appendStringField(nil, resourceSpansSchemaURL, rs.SchemaUrl)
	type scope struct {
		shell, spans []byte
	}
	scopes := make([]scope, len(rs.ScopeSpans))
	size := len(resource) + len(schema)
	for i, ss := range rs.ScopeSpans {
		s := &scopes[i]
		var err error
		if s.shell, err = proto.Marshal(&tracepb.ScopeSpans{Scope: ss.Scope, Spans: ss.Spans, SchemaUrl: ss.SchemaUrl}); err != nil {
			return err
		}
		s.spans = ss.ProtoReflect().GetUnknown()
		size += 1 + protowire.SizeBytes(len(s.shell)+len(s.spans))
	}
	w.head = appendVarint(appendTag(w.head, requestResourceSpans, protowire.BytesType), uint64(size))
	w.head = append(w.head, resource...)
	for _, s := range scopes {
		w.head = appendVarint(appendTag(w.head, resourceSpansScopeSpans, protowire.BytesType), uint64(len(s.shell)+len(s.spans)))
		w.head = append(w.head, s.shell...)
		w.spans(s.spans, lent)
	}
	w.head = append(w.head, schema...)
	return nil
}

// copied writes field num holding m, marshalled as it is.
func (w *slicedWriter) copied(num protowire.Number, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	w.head = appendBytes(appendTag(w.head, num, protowire.BytesType), b)
	return nil
}

// spans writes encoded spans: referenced when large, else copied (gRPC
// does not count the references of small buffers: mem.NewBuffer).
func (w *slicedWriter) spans(b []byte, lent *lentBuffers) {
	if len(b) < minLent || mem.IsBelowBufferPoolingThreshold(cap(b)) {
		w.head = append(w.head, b...)
		return
	}
	w.flushHead()
	w.out = append(w.out, lent.lend(b))
}

func (w *slicedWriter) flushHead() {
	if len(w.head) > 0 {
		w.out = append(w.out, mem.SliceBuffer(w.head))
		w.head = nil
	}
}

func (w *slicedWriter) finish() mem.BufferSlice {
	w.flushHead()
	return w.out
}
