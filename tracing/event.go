package tracing

import (
	"math"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// eventBuilder adds span events without allocating an attribute slice, an
// attribute option or an option list per event. The SDK copies an event's
// attributes while adding it (trace.NewEventConfig), so one buffer, and one
// attribute option per attribute count, serve every event of a span; only
// the timestamp option is made per event. Not safe for concurrent use: the
// owner serialises its events.
type eventBuilder struct {
	attrs  []attribute.KeyValue // the buffer: len 0, cap the most attributes of an event
	cache  [3]lenOption
	opts   [2]trace.EventOption
	writer eventAttrs // for eventSink.addFrom
	enc    []byte     // a direct span's encoding while its content is written (eventSink.finish)
}

// lenOption is WithAttributes(attrs[:n]...) of the buffer.
type lenOption struct {
	n   int
	opt trace.EventOption
}

// newEventBuilder uses buf (its capacity) as the attribute buffer; owners
// pass an array of their own so that the builder allocates nothing itself.
func newEventBuilder(buf []attribute.KeyValue) eventBuilder {
	return eventBuilder{attrs: buf[:0]}
}

// buf returns the empty attribute buffer to append an event's attributes to.
func (b *eventBuilder) buf() []attribute.KeyValue { return b.attrs[:0] }

// add adds event name at time at. attrs is normally b.buf() appended
// within its capacity; any other slice is passed as it is.
func (b *eventBuilder) add(span trace.Span, name string, at time.Time, attrs []attribute.KeyValue) {
	own := b.isBuffer(attrs)
	b.opts[0] = trace.WithTimestamp(at)
	if own {
		b.opts[1] = b.attributeOption(len(attrs))
	} else {
		b.opts[1] = trace.WithAttributes(attrs...)
	}
	span.AddEvent(name, b.opts[:]...)
	b.opts[0], b.opts[1] = nil, nil
	if own {
		clear(attrs) // the SDK holds its own copy; do not pin strings here
	}
}

// isBuffer reports whether attrs is a non-empty prefix of the buffer.
func (b *eventBuilder) isBuffer(attrs []attribute.KeyValue) bool {
	return len(attrs) > 0 && len(attrs) <= cap(b.attrs) && &attrs[0] == &b.attrs[:1][0]
}

// attributeOption returns WithAttributes(buffer[:n]...), made once per n
// among the last few counts used.
func (b *eventBuilder) attributeOption(n int) trace.EventOption {
	for i := range b.cache {
		if c := &b.cache[i]; c.opt != nil && c.n == n {
			return c.opt
		}
	}
	opt := trace.WithAttributes(b.attrs[:n]...)
	slot := &b.cache[n%len(b.cache)]
	for i := range b.cache {
		if b.cache[i].opt == nil {
			slot = &b.cache[i]
			break
		}
	}
	*slot = lenOption{n: n, opt: opt}
	return opt
}

// pooledAttrs is the capacity of a pooled builder's buffer: the most
// attributes of a journey or API event, and of the llm_request span's
// attributes set at its end.
const pooledAttrs = 16

// builders lends event builders to spans whose events come one at a time
// but which are too many to own a buffer each (a buffer per request
// was about a tenth of journey tracing's allocation).
var builders = sync.Pool{New: func() any {
	b := newEventBuilder(make([]attribute.KeyValue, 0, pooledAttrs))
	return &b
}}

// borrowBuilder returns a builder from the pool; give it back with
// returnBuilder once its attributes were handed to the SDK.
func borrowBuilder() *eventBuilder { return builders.Get().(*eventBuilder) }

func returnBuilder(b *eventBuilder) { builders.Put(b) }

// eventSink is where one span's events go. Through the SDK (AddEvent) by
// default; when the export processor is the provider's only processor
// (every running server), they are written in OTLP encoding: for a span
// made without the SDK (directSpan) while the span itself is encoded into
// the export batch, at its end (finish); for others into a buffer as they
// come, and the processor exports them with the span when it ends
// (exportProcessor.endWithEvents). Adding an event through the SDK
// copies its attributes, grows the span's event list, and End copies the
// list again; the encoding costs a fraction of that (docs/tracing-overhead.md
// has the figures). Tests that record spans use the SDK path; they require
// both paths to export the same spans. Not safe for concurrent use: the
// span's owner serialises its events and its end.
type eventSink struct {
	export *exportProcessor // nil: through the SDK
	buf    *[]byte          // export path, sampled span made by the SDK: the events' encoding
}

// newEventSink returns the sink of span's events: encoded for export when
// export is set (and dropped when the span is not sampled, as the export
// processor would drop them), else through the SDK.
func newEventSink(export *exportProcessor, span trace.Span) eventSink {
	if _, direct := span.(*directSpan); direct || export == nil || !span.SpanContext().IsSampled() {
		return eventSink{export: export} // a direct span's events need no buffer: see finish
	}
	return eventSink{export: export, buf: eventBuffers.Get().(*[]byte)}
}

// addFrom adds event name at time at, whose attributes src writes: into
// b's buffer for the SDK, or straight into the encoding.
func (e *eventSink) addFrom(b *eventBuilder, span trace.Span, name string, at time.Time, src eventSource) {
	w := &b.writer
	switch {
	case e.export == nil:
		w.list = b.buf()
		src.writeAttributes(w)
		b.add(span, name, at, w.list)
		w.list = nil
	case e.buf != nil:
		var mark int
		w.otlp = true
		w.enc, mark = openEvent(*e.buf, name, at)
		src.writeAttributes(w)
		*e.buf = closeEvent(w.enc, mark, 0)
		w.otlp, w.enc = false, nil
	}
}

// eventSource writes the attributes of an event (eventSink.addFrom).
type eventSource interface {
	writeAttributes(w *eventAttrs)
}

// eventAttrs receives an event's attributes: as attribute.KeyValues for the
// SDK, or, when otlp is set, as Event.attributes fields in OTLP encoding,
// which spares frequent events (the step events) building attribute values
// and encoding their keys. One list of an event's attributes serves both.
type eventAttrs struct {
	otlp bool
	list []attribute.KeyValue
	enc  []byte
}

// eventKey is an attribute key of a frequent event, with its OTLP encoding
// made once: for ints, the whole Event.attributes field of a value whose
// varint takes one byte but for that byte (a longer varint changes two
// length bytes of it, patched after the copy); for floats, the whole field
// but for the value's eight bytes; for strings, the start of the KeyValue.
//
// The encodings of all keys lie side by side in one block of memory
// (keyArena), in the order the keys are made: each event kind's keys in
// the order its attributes are written. In a server every hook finds them
// evicted by the serving code in between, and an event's attributes then
// cost a cache miss per line of key data they read: one contiguous block
// of a few lines, where the keys' separately allocated strings (one per
// varint size) took two or three misses per attribute.
type eventKey struct {
	int1    []byte // the int field for a one-byte varint; otlp lies within it
	float   []byte
	otlp    otlpKey
	kvLenAt int              // index in int1 of the KeyValue's length byte; -1: int1 cannot be patched (a long key)
	field   protowire.Number // Event.attributes, or Span.attributes (newSpanKey)
	name    attribute.Key
}

func newEventKey(name string) *eventKey { return newAttributeKey(name, eventAttributes) }

// newSpanKey is an eventKey for attributes of a span (Span.attributes),
// written with its events (eventSink.setAttributes).
func newSpanKey(name string) *eventKey { return newAttributeKey(name, spanAttributes) }

func newAttributeKey(name string, field protowire.Number) *eventKey {
	otlp := newOTLPKey(name)
	int1 := appendTag(appendKVStart(nil, field, otlp, 1+1), anyInt, protowire.VarintType)
	float := appendTag(appendKVStart(nil, field, otlp, 1+8), anyDouble, protowire.Fixed64Type)
	block := keyArena.hold(append(slices.Clip(int1), float...))
	k := &eventKey{name: attribute.Key(name), field: field, kvLenAt: -1,
		int1: block[:len(int1):len(int1)], float: block[len(int1):]}
	end := len(int1) - 2 // then the AnyValue's length and the int's tag
	k.otlp = otlpKey(k.int1[end-len(otlp) : end : end])
	// The KeyValue's length (one byte after the tag) and the AnyValue's
	// (the byte before the int's tag) stay one byte for every varint size.
	if len(otlp)+2+maxVarintLen < 0x80 {
		k.kvLenAt = protowire.SizeTag(field)
	}
	return k
}

const maxVarintLen = 10

// appendInt appends the field of int attribute k = v.
func (k *eventKey) appendInt(b []byte, v uint64) []byte {
	size := protowire.SizeVarint(v)
	if size == 1 {
		return append(append(b, k.int1...), byte(v))
	}
	if k.kvLenAt < 0 {
		b = appendKVStart(b, k.field, k.otlp, 1+size)
		return appendVarint(appendTag(b, anyInt, protowire.VarintType), v)
	}
	n := len(b)
	b = append(b, k.int1...)
	b[n+k.kvLenAt] += byte(size - 1)
	b[len(b)-2] = byte(1 + size)
	return appendVarint(b, v)
}

// keyArena is the block of memory that holds the keys' encodings.
var keyArena = &arena{buf: make([]byte, 0, keyArenaSize)}

// keyArenaSize holds the encodings of vserve's keys (about 3 KB) with room
// for more; keys made once it is full get memory of their own.
const keyArenaSize = 8 << 10

// arena hands out memory from one block, never moving what it gave out.
type arena struct {
	mu  sync.Mutex
	buf []byte
}

// hold returns a copy of b in the arena (its own memory once it is full).
func (a *arena) hold(b []byte) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.buf)+len(b) > cap(a.buf) {
		return slices.Clone(b)
	}
	n := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[n:len(a.buf):len(a.buf)]
}

func (w *eventAttrs) int(k *eventKey, v int64) {
	if w.otlp {
		w.enc = k.appendInt(w.enc, uint64(v))
		return
	}
	w.list = append(w.list, k.name.Int64(v))
}

func (w *eventAttrs) float(k *eventKey, v float64) {
	if w.otlp {
		w.enc = appendFixed64(append(w.enc, k.float...), math.Float64bits(v))
		return
	}
	w.list = append(w.list, k.name.Float64(v))
}

func (w *eventAttrs) str(k *eventKey, v string) {
	if w.otlp {
		w.enc = appendStringKV(w.enc, k.field, k.otlp, v)
		return
	}
	w.list = append(w.list, k.name.String(v))
}

// spanContent is what the owner of a journey span holds back until the
// span ends: its events, and the attributes it sets at the end.
// writeContent adds them, in order, through e (addFrom, setAttributes).
type spanContent interface {
	writeContent(e *eventSink, b *eventBuilder, span trace.Span)
}

// finish ends span at time at with the events and attributes c holds back.
// A direct span's are written while the exporter encodes the span into its
// batch (directSpan.endWithContent): once, into the batch, with no buffer
// of their own; a buffer from a pool, cold at every span's end in a
// server, cost more than writing the bytes. Other spans take them as
// addFrom and setAttributes do.
//
// size is about the bytes c writes. b, where not nil, is the caller's
// builder; else the exporter's (under its lock) or a pooled one serves.
func (e *eventSink) finish(b *eventBuilder, span trace.Span, c spanContent, size int, at time.Time) {
	if d, ok := span.(*directSpan); ok && e.export != nil && e.buf == nil {
		d.endWithContent(at, size, func(enc []byte) []byte {
			w := b
			if w == nil {
				w = &e.export.contentBuilder // the exporter's lock is held
			}
			w.enc, e.buf = enc, &w.enc
			c.writeContent(e, w, span)
			enc = w.enc
			w.enc, e.buf = nil, nil
			return enc
		})
		return
	}
	if b == nil {
		b = borrowBuilder()
		defer returnBuilder(b)
	}
	c.writeContent(e, b, span)
	e.end(span, at)
}

// journeySpanContent is about the size of a journey span's events and
// attributes: llm_core's four events take 1.2 KB.
const journeySpanContent = 2048

// setAttributes sets the attributes src writes (with spanKeys) on span: on
// the export path they are encoded with the events as Span.attributes
// fields, which a decoder appends to the attributes the SDK exports (the
// SDK would append them too). Protobuf decoders take fields in any order.
func (e *eventSink) setAttributes(b *eventBuilder, span trace.Span, src eventSource) {
	w := &b.writer
	switch {
	case e.export == nil:
		w.list = b.buf()
		src.writeAttributes(w)
		span.SetAttributes(w.list...)
		clear(w.list)
		w.list = nil
	case e.buf != nil:
		w.otlp, w.enc = true, *e.buf
		src.writeAttributes(w)
		*e.buf = w.enc
		w.otlp, w.enc = false, nil
	}
}

// end ends span at time at with its events and releases the buffer; later
// adds go nowhere. (The time is a plain value, not an end option: each
// trace.WithTimestamp allocates, and a direct span needs no option.)
func (e *eventSink) end(span trace.Span, at time.Time) {
	if e.buf == nil {
		endAt(span, at)
		return
	}
	e.export.endWithEvents(span, *e.buf, at)
	if cap(*e.buf) <= maxPooledEventBuffer {
		*e.buf = (*e.buf)[:0]
		eventBuffers.Put(e.buf)
	}
	e.buf = nil
}

// maxPooledEventBuffer bounds the event buffers kept for reuse: a step
// window of 100 steps at batch 64 with a snapshot of every request in
// every step needs about 3 MB; a journey span about 1 KB.
const maxPooledEventBuffer = 4 << 20

// newEventBufferSize holds a journey span's events where the SDK makes the
// span (journeySpanContent).
const newEventBufferSize = journeySpanContent

// endAt ends span at time at.
func endAt(span trace.Span, at time.Time) {
	if d, ok := span.(*directSpan); ok {
		d.endWithContent(at, 0, noContent)
		return
	}
	span.End(trace.WithTimestamp(at))
}

var eventBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, newEventBufferSize)
	return &b
}}
