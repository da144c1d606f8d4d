package tracing

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"google.golang.org/protobuf/encoding/protowire"
)

// spanStarter starts the spans of one kind (llm_request, llm_core or the
// step windows): through the SDK's tracer, or, in a running server, as
// directSpans.
type spanStarter struct {
	tracer  trace.Tracer
	name    string
	kind    trace.SpanKind
	kindOpt trace.SpanStartOption // made once: each WithSpanKind allocates
	direct  *directSpans          // nil: through the SDK
	scope   *instrumentation.Scope
}

// newSpanStarter starts spans name of kind with the provider's tracer of
// scope, or directly when direct is set.
func newSpanStarter(tp trace.TracerProvider, scope, name string, kind trace.SpanKind, direct *directSpans) *spanStarter {
	return &spanStarter{tracer: tp.Tracer(scope), name: name, kind: kind, kindOpt: trace.WithSpanKind(kind),
		direct: direct, scope: &instrumentation.Scope{Name: scope}}
}

// startIn starts a span under the remote span context parent (a new
// trace when it is not valid) at time at, with its memory in ds, a field
// of the span's owner, where the span is made directly: an allocation
// fewer per span. attrs must stay unchanged while the span lives.
func (j *spanStarter) startIn(ds *directSpan, parent trace.SpanContext, at time.Time, attrs ...attribute.KeyValue) trace.Span {
	if j.direct == nil {
		ctx := context.Background()
		if parent.IsValid() {
			ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
		}
		return j.startNamed(ctx, j.name, at, attrs...)
	}
	return j.direct.startIn(ds, j, j.name, parent, at, attrs)
}

// startNamed is start for a span named name.
func (j *spanStarter) startNamed(parent context.Context, name string, at time.Time, attrs ...attribute.KeyValue) trace.Span {
	if j.direct == nil {
		_, span := j.tracer.Start(parent, name, j.kindOpt, trace.WithTimestamp(at), trace.WithAttributes(attrs...))
		return span
	}
	return j.direct.startIn(nil, j, name, trace.SpanContextFromContext(parent), at, attrs)
}

// directSpans makes a running server's spans without the SDK.
//
// In a server, llm_request and llm_core were most of journey tracing's CPU:
// the SDK's span, its start and end configurations, its sampler, its id
// generator's lock and the read-only snapshot End makes for the processors
// cost more than the export processor's encoding of the same span, and in
// a server each hook finds them cold (docs/tracing-overhead.md has the
// figures). When the export processor is the provider's only processor, no
// span limit can trim a journey span, and the sampler is the SDK's default
// (OTEL_TRACES_SAMPLER unset), the spans are made here instead, with what
// the SDK would give them: random ids, the parent's trace id, trace state
// and sampling decision (parent-based, always on), and the export
// processor encodes them when they end. Tests replay the same journeys
// through the SDK and this way and require equal exports.
type directSpans struct {
	export *exportProcessor
	res    *resource.Resource
	tp     trace.TracerProvider
}

// newDirectSpans returns the direct span maker of a provider whose only
// processor is sole (nil: none), or nil when the SDK must make the spans.
func newDirectSpans(sole *exportProcessor, res *resource.Resource, tp trace.TracerProvider) *directSpans {
	if sole == nil || os.Getenv("OTEL_TRACES_SAMPLER") != "" {
		return nil
	}
	return &directSpans{export: sole, res: res, tp: tp}
}

// startIn returns a recording directSpan, in ds when it is not nil, or,
// under a parent that is not sampled, a non-recording span with the
// context the SDK would give it.
func (d *directSpans) startIn(ds *directSpan, j *spanStarter, name string, parent trace.SpanContext, at time.Time, attrs []attribute.KeyValue) trace.Span {
	cfg := trace.SpanContextConfig{TraceID: parent.TraceID(), SpanID: randomSpanID(), TraceState: parent.TraceState()}
	if !parent.IsValid() {
		cfg.TraceID = randomTraceID()
	}
	if !parent.IsValid() || parent.IsSampled() {
		cfg.TraceFlags = trace.FlagsSampled
	}
	sc := trace.NewSpanContext(cfg)
	if !sc.IsSampled() {
		return trace.SpanFromContext(trace.ContextWithSpanContext(context.Background(), sc))
	}
	if ds == nil {
		ds = new(directSpan)
	}
	*ds = directSpan{
		spans: d, scope: j.scope, name: name, kind: j.kind, sc: sc, parent: parent, start: at,
		attrs: attrs,
	}
	return ds
}

// directSpan is a journey span made without the SDK (directSpans). Its
// events are written by its eventSink, in OTLP encoding; AddEvent,
// AddLink and RecordError record nothing. SetAttributes appends (vserve
// never sets a key twice). Like the SDK's spans it is safe for one owner:
// the journey's mutexes serialise its calls.
type directSpan struct {
	embedded.Span
	spans  *directSpans
	scope  *instrumentation.Scope // its starter's: batches find its group by this pointer
	name   string
	kind   trace.SpanKind
	sc     trace.SpanContext
	parent trace.SpanContext
	start  time.Time
	attrs  []attribute.KeyValue
	status sdktrace.Status
	ended  bool
}

var _ trace.Span = (*directSpan)(nil)

// End exports the span without events (its owner's are written by
// eventSink.finish).
func (s *directSpan) End(opts ...trace.SpanEndOption) {
	cfg := trace.NewSpanEndConfig(opts...)
	s.endWithContent(cfg.Timestamp(), 0, noContent)
}

// noContent is the content of a span ended without events.
func noContent(b []byte) []byte { return b }

// endWithContent ends the span once at time end (zero: now) and queues
// its encoding, with the events (and late Span.attributes fields) that
// content appends, of about size bytes, between its attributes and its
// status, while the exporter holds its lock: content must not end spans.
func (s *directSpan) endWithContent(end time.Time, size int, content func([]byte) []byte) {
	if s.ended {
		return
	}
	s.ended = true
	if end.IsZero() {
		end = time.Now()
	}
	s.spans.export.addDirect(s, size, content, end)
	s.attrs = nil
}

// appendTo appends the span, ended at end, as one ScopeSpans.spans field,
// with what content appends (about size bytes) between its attributes and
// its status.
func (s *directSpan) appendTo(b []byte, size int, content func([]byte) []byte, end time.Time) []byte {
	lenBytes := protowire.SizeVarint(uint64(size + directSpanFields))
	b, mark := openSizedMessage(b, scopeSpansSpans, lenBytes)
	b = appendSpanStart(b, s.sc, s.parent, s.name, s.kind, s.start, end, s.attrs)
	b = content(b)
	b = appendSpanEnd(b, s.status, s.sc, s.parent)
	return closeSizedMessage(b, mark, lenBytes)
}

// directSpanFields is about the size of a direct span's own fields (ids,
// name, kind, times, a few attributes, status and flags).
const directSpanFields = 128

func (s *directSpan) AddEvent(string, ...trace.EventOption)   {}
func (s *directSpan) AddLink(trace.Link)                      {}
func (s *directSpan) RecordError(error, ...trace.EventOption) {}
func (s *directSpan) IsRecording() bool                       { return !s.ended }
func (s *directSpan) SpanContext() trace.SpanContext          { return s.sc }
func (s *directSpan) TracerProvider() trace.TracerProvider    { return s.spans.tp }

func (s *directSpan) SetName(name string) {
	if !s.ended {
		s.name = name
	}
}

func (s *directSpan) SetAttributes(kv ...attribute.KeyValue) {
	if !s.ended {
		s.attrs = append(s.attrs, kv...)
	}
}

// SetStatus follows the SDK: Unset changes nothing, OK is final, and only
// Error keeps a description.
func (s *directSpan) SetStatus(code codes.Code, description string) {
	if s.ended || code == codes.Unset || s.status.Code == codes.Ok {
		return
	}
	s.status = sdktrace.Status{Code: code}
	if code == codes.Error {
		s.status.Description = description
	}
}

func randomTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.LittleEndian.PutUint64(id[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func randomSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.LittleEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}
