package tracing

import (
	"encoding/binary"
	"math"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// This file writes the OTLP protobuf encoding (opentelemetry-proto,
// trace/v1 and common/v1) of SDK spans straight into a byte slice. It
// produces the same messages as the stock exporter's transform (the tests
// decode both and compare them field by field) without building a tree of
// generated messages first: the stock transform makes about three heap
// objects per attribute, which at the event volume of journey and step
// tracing was most of tracing's CPU cost (see docs/tracing-overhead.md).

// OTLP field numbers (opentelemetry/proto/trace/v1/trace.proto and
// common/v1/common.proto).
const (
	spanTraceID        protowire.Number = 1
	spanSpanID         protowire.Number = 2
	spanTraceState     protowire.Number = 3
	spanParentSpanID   protowire.Number = 4
	spanName           protowire.Number = 5
	spanKind           protowire.Number = 6
	spanStartTime      protowire.Number = 7
	spanEndTime        protowire.Number = 8
	spanAttributes     protowire.Number = 9
	spanDroppedAttrs   protowire.Number = 10
	spanEvents         protowire.Number = 11
	spanDroppedEvents  protowire.Number = 12
	spanLinks          protowire.Number = 13
	spanDroppedLinks   protowire.Number = 14
	spanStatus         protowire.Number = 15
	spanFlags          protowire.Number = 16
	eventTime          protowire.Number = 1
	eventName          protowire.Number = 2
	eventAttributes    protowire.Number = 3
	eventDroppedAttrs  protowire.Number = 4
	linkTraceID        protowire.Number = 1
	linkSpanID         protowire.Number = 2
	linkAttributes     protowire.Number = 4
	linkDroppedAttrs   protowire.Number = 5
	linkFlags          protowire.Number = 6
	statusMessage      protowire.Number = 2
	statusCode         protowire.Number = 3
	keyValueKey        protowire.Number = 1
	keyValueValue      protowire.Number = 2
	anyString          protowire.Number = 1
	anyBool            protowire.Number = 2
	anyInt             protowire.Number = 3
	anyDouble          protowire.Number = 4
	anyArray           protowire.Number = 5
	anyKeyValueList    protowire.Number = 6
	anyBytes           protowire.Number = 7
	listValues         protowire.Number = 1 // ArrayValue.values and KeyValueList.values
	resourceAttributes protowire.Number = 1
	scopeName          protowire.Number = 1
	scopeVersion       protowire.Number = 2
	scopeAttributes    protowire.Number = 3
	scopeSpansSpans    protowire.Number = 2     // ScopeSpans.spans
	flagsHasIsRemote   uint32           = 0x100 // SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
	flagsIsRemote      uint32           = 0x200 // SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
	statusCodeOK       uint64           = 1
	statusCodeError    uint64           = 2
)

// appendSpanHead appends the fields of one OTLP Span message (without a tag
// or length of its own) for s up to and including the events the SDK
// recorded; appendSpanTail the fields after them. Span.events fields
// encoded beforehand (appendEvent) go in between (encodedSpan).
func appendSpanHead(b []byte, s sdktrace.ReadOnlySpan) []byte {
	b = appendSpanStart(b, s.SpanContext(), s.Parent(), s.Name(), s.SpanKind(), s.StartTime(), s.EndTime(), s.Attributes())
	b = appendVarintField(b, spanDroppedAttrs, clampCount(s.DroppedAttributes()))
	for _, e := range s.Events() {
		b = appendEvent(b, e.Name, e.Time, e.Attributes, e.DroppedAttributeCount)
	}
	return b
}

// appendSpanStart appends a Span's fields up to its attributes.
func appendSpanStart(b []byte, sc, parent trace.SpanContext, name string, kind trace.SpanKind, start, end time.Time, attrs []attribute.KeyValue) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytesField(b, spanTraceID, tid[:])
	b = appendBytesField(b, spanSpanID, sid[:])
	if ts := sc.TraceState(); ts.Len() > 0 {
		b = appendStringField(b, spanTraceState, ts.String())
	}
	if psid := parent.SpanID(); psid.IsValid() {
		b = appendBytesField(b, spanParentSpanID, psid[:])
	}
	b = appendStringField(b, spanName, name)
	b = appendVarintField(b, spanKind, otlpSpanKind(kind))
	b = appendFixed64Field(b, spanStartTime, unixNanos(start.UnixNano()))
	b = appendFixed64Field(b, spanEndTime, unixNanos(end.UnixNano()))
	return appendKeyValues(b, spanAttributes, attrs)
}

func appendSpanTail(b []byte, s sdktrace.ReadOnlySpan) []byte {
	b = appendVarintField(b, spanDroppedEvents, clampCount(s.DroppedEvents()))
	for _, l := range s.Links() {
		b = appendLink(b, l)
	}
	b = appendVarintField(b, spanDroppedLinks, clampCount(s.DroppedLinks()))
	return appendSpanEnd(b, s.Status(), s.SpanContext(), s.Parent())
}

// appendSpanEnd appends a Span's last fields: its status and flags.
func appendSpanEnd(b []byte, st sdktrace.Status, sc, parent trace.SpanContext) []byte {
	b = appendStatus(b, st)
	return appendFixed32Field(b, spanFlags, spanFlagsOf(sc.TraceFlags(), parent))
}

func appendEvent(b []byte, name string, at time.Time, attrs []attribute.KeyValue, dropped int) []byte {
	b, mark := openEvent(b, name, at)
	b = appendKeyValues(b, eventAttributes, attrs)
	return closeEvent(b, mark, dropped)
}

// openEvent starts a Span.events field with its time and name; its
// attributes (Event.attributes fields) follow, then closeEvent.
func openEvent(b []byte, name string, at time.Time) ([]byte, int) {
	b, mark := openSizedMessage(b, spanEvents, eventLenBytes)
	b = appendFixed64Field(b, eventTime, unixNanos(at.UnixNano()))
	return appendStringField(b, eventName, name), mark
}

// closeEvent ends the event that openEvent started.
func closeEvent(b []byte, mark int, dropped int) []byte {
	b = appendVarintField(b, eventDroppedAttrs, clampCount(dropped))
	return closeSizedMessage(b, mark, eventLenBytes)
}

// eventLenBytes is the varint size of most events' lengths: 128 bytes to
// 16 KiB (the step events and the journey events with attributes).
const eventLenBytes = 2

// otlpKey is an attribute key encoded as the start of a KeyValue message:
// the key field and the value field's tag. Made once per key (eventKey),
// it lets frequent events write their attributes without encoding keys.
type otlpKey []byte

func newOTLPKey(key string) otlpKey {
	b := appendStringField(nil, keyValueKey, key)
	return otlpKey(appendTag(b, keyValueValue, protowire.BytesType))
}

// appendStringKV appends KeyValue field num of key k and the string value
// v, as appendKeyValue does for attribute.String(key, v).
func appendStringKV(b []byte, num protowire.Number, k otlpKey, v string) []byte {
	b = appendKVStart(b, num, k, 1+protowire.SizeBytes(len(v)))
	return appendString(appendTag(b, anyString, protowire.BytesType), v)
}

// appendKVStart appends a KeyValue's tag and length, k, and the length of
// its value, an AnyValue of valueSize bytes.
func appendKVStart(b []byte, num protowire.Number, k otlpKey, valueSize int) []byte {
	b = appendVarint(appendTag(b, num, protowire.BytesType), uint64(len(k)+protowire.SizeBytes(valueSize)))
	return appendVarint(append(b, k...), uint64(valueSize))
}

// appendLink appends one Span.Link field. Like the stock transform, the
// link's trace state is not exported.
func appendLink(b []byte, l sdktrace.Link) []byte {
	b, mark := openMessage(b, spanLinks)
	tid, sid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
	b = appendBytesField(b, linkTraceID, tid[:])
	b = appendBytesField(b, linkSpanID, sid[:])
	b = appendKeyValues(b, linkAttributes, l.Attributes)
	b = appendVarintField(b, linkDroppedAttrs, clampCount(l.DroppedAttributeCount))
	b = appendFixed32Field(b, linkFlags, spanFlagsOf(l.SpanContext.TraceFlags(), l.SpanContext))
	return closeMessage(b, mark)
}

// appendStatus appends Span.status, present on every span (also when unset).
func appendStatus(b []byte, st sdktrace.Status) []byte {
	b, mark := openMessage(b, spanStatus)
	b = appendStringField(b, statusMessage, st.Description)
	switch st.Code {
	case codes.Ok:
		b = appendVarintField(b, statusCode, statusCodeOK)
	case codes.Error:
		b = appendVarintField(b, statusCode, statusCodeError)
	}
	return closeMessage(b, mark)
}

// spanFlagsOf is OTLP's flags word: the W3C trace flags in the low byte,
// and whether the parent (or linked) context is remote, which is known.
func spanFlagsOf(tf trace.TraceFlags, parent trace.SpanContext) uint32 {
	flags := uint32(tf) | flagsHasIsRemote
	if parent.IsRemote() {
		flags |= flagsIsRemote
	}
	return flags
}

// otlpSpanKind maps the API's span kind to OTLP's enum (unknown kinds are
// UNSPECIFIED).
func otlpSpanKind(k trace.SpanKind) uint64 {
	if k >= trace.SpanKindInternal && k <= trace.SpanKindConsumer {
		return uint64(k) // the API's numbering is OTLP's: 1 internal ... 5 consumer
	}
	return 0
}

// appendResource appends the fields of an OTLP Resource message.
func appendResource(b []byte, r *resource.Resource) []byte {
	return appendKeyValues(b, resourceAttributes, r.Attributes())
}

// appendScope appends the fields of an OTLP InstrumentationScope message.
func appendScope(b []byte, s instrumentation.Scope) []byte {
	b = appendStringField(b, scopeName, s.Name)
	b = appendStringField(b, scopeVersion, s.Version)
	return appendKeyValues(b, scopeAttributes, s.Attributes.ToSlice())
}

// appendKeyValues appends one KeyValue field num per attribute.
func appendKeyValues(b []byte, num protowire.Number, kvs []attribute.KeyValue) []byte {
	for _, kv := range kvs {
		b = appendKeyValue(b, num, kv)
	}
	return b
}

// appendKeyValue appends one KeyValue field. Scalar values (almost all of
// vserve's) take a direct path whose message sizes are computed up front;
// slices and maps are nested messages whose lengths are patched in after.
// As a oneof member, a scalar is written even when it is zero.
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	v := kv.Value
	switch v.Type() {
	case attribute.INT64:
		n := uint64(v.AsInt64())
		b = appendKeyValueHeader(b, num, kv.Key, 1+protowire.SizeVarint(n))
		return appendVarint(appendTag(b, anyInt, protowire.VarintType), n)
	case attribute.FLOAT64:
		b = appendKeyValueHeader(b, num, kv.Key, 1+8)
		return appendFixed64(appendTag(b, anyDouble, protowire.Fixed64Type), math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		str := v.AsString()
		b = appendKeyValueHeader(b, num, kv.Key, 1+protowire.SizeBytes(len(str)))
		return appendString(appendTag(b, anyString, protowire.BytesType), str)
	case attribute.BOOL:
		b = appendKeyValueHeader(b, num, kv.Key, 2)
		return appendVarint(appendTag(b, anyBool, protowire.VarintType), protowire.EncodeBool(v.AsBool()))
	}
	b, mark := openMessage(b, num)
	b = appendStringField(b, keyValueKey, string(kv.Key))
	b = appendAnyValue(b, keyValueValue, v)
	return closeMessage(b, mark)
}

// appendKeyValueHeader appends a KeyValue's tag and length, its key and
// the tag and length of its value, an AnyValue of valueSize bytes.
func appendKeyValueHeader(b []byte, num protowire.Number, key attribute.Key, valueSize int) []byte {
	size := 1 + protowire.SizeBytes(valueSize)
	if key != "" {
		size += 1 + protowire.SizeBytes(len(key))
	}
	b = appendVarint(appendTag(b, num, protowire.BytesType), uint64(size))
	b = appendStringField(b, keyValueKey, string(key))
	return appendVarint(appendTag(b, keyValueValue, protowire.BytesType), uint64(valueSize))
}

// appendAnyValue appends an AnyValue field. Its value is a oneof, so zero
// values are written too; an EMPTY value is an AnyValue with nothing set.
func appendAnyValue(b []byte, num protowire.Number, v attribute.Value) []byte {
	b, mark := openMessage(b, num)
	switch v.Type() {
	case attribute.EMPTY:
	case attribute.BOOL:
		b = appendVarint(appendTag(b, anyBool, protowire.VarintType), protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = appendVarint(appendTag(b, anyInt, protowire.VarintType), uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = appendFixed64(appendTag(b, anyDouble, protowire.Fixed64Type), math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		b = appendString(appendTag(b, anyString, protowire.BytesType), v.AsString())
	case attribute.BYTESLICE:
		b = appendBytes(appendTag(b, anyBytes, protowire.BytesType), v.AsByteSlice())
	case attribute.BOOLSLICE:
		b = appendArray(b, v.AsBoolSlice(), attribute.BoolValue)
	case attribute.INT64SLICE:
		b = appendArray(b, v.AsInt64Slice(), attribute.Int64Value)
	case attribute.FLOAT64SLICE:
		b = appendArray(b, v.AsFloat64Slice(), attribute.Float64Value)
	case attribute.STRINGSLICE:
		b = appendArray(b, v.AsStringSlice(), attribute.StringValue)
	case attribute.SLICE:
		b = appendArray(b, v.AsSlice(), func(v attribute.Value) attribute.Value { return v })
	case attribute.MAP:
		var list int
		b, list = openMessage(b, anyKeyValueList)
		b = appendKeyValues(b, listValues, v.AsMap())
		b = closeMessage(b, list)
	default:
		b = appendString(appendTag(b, anyString, protowire.BytesType), "INVALID")
	}
	return closeMessage(b, mark)
}

// appendArray appends AnyValue.array_value holding vals.
func appendArray[T any](b []byte, vals []T, value func(T) attribute.Value) []byte {
	b, mark := openMessage(b, anyArray)
	for _, v := range vals {
		b = appendAnyValue(b, listValues, value(v))
	}
	return closeMessage(b, mark)
}

// openMessage starts length-delimited field num, reserving one byte for
// its length; the returned mark is where the body starts.
func openMessage(b []byte, num protowire.Number) ([]byte, int) {
	return openSizedMessage(b, num, 1)
}

// closeMessage writes the length of the body that openMessage started at
// mark. A body of 128 bytes or more needs a longer varint: the body moves.
func closeMessage(b []byte, mark int) []byte {
	return closeSizedMessage(b, mark, 1)
}

// openSizedMessage is openMessage reserving lenBytes bytes for the length:
// the varint size of the body's expected length, so that closing it need
// not move the body (events take eventLenBytes).
func openSizedMessage(b []byte, num protowire.Number, lenBytes int) ([]byte, int) {
	var zero [10]byte
	b = append(appendTag(b, num, protowire.BytesType), zero[:lenBytes]...)
	return b, len(b)
}

// closeSizedMessage writes the length of the body that openSizedMessage
// started at mark with lenBytes reserved, moving the body when its length
// takes another number of bytes (the encoding stays canonical).
func closeSizedMessage(b []byte, mark, lenBytes int) []byte {
	n := len(b) - mark
	size := protowire.SizeVarint(uint64(n))
	start := mark - lenBytes // where the length goes
	switch {
	case size < lenBytes:
		copy(b[start+size:], b[mark:])
		b = b[:start+size+n]
	case size > lenBytes:
		var pad [9]byte
		b = append(b, pad[:size-lenBytes]...)
		copy(b[start+size:], b[mark:mark+n])
	}
	appendVarint(b[:start], uint64(n)) // in place: capacity is there
	return b
}

// The field helpers skip proto3 defaults (zero, empty), as proto.Marshal does.

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(appendTag(b, num, protowire.BytesType), s)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	return appendBytes(appendTag(b, num, protowire.BytesType), v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return appendVarint(appendTag(b, num, protowire.VarintType), v)
}

func appendFixed64Field(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return appendFixed64(appendTag(b, num, protowire.Fixed64Type), v)
}

func appendFixed32Field(b []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return b
	}
	return appendFixed32(appendTag(b, num, protowire.Fixed32Type), v)
}

// unixNanos clamps times before 1970 to 0, as the stock transform does.
func unixNanos(ns int64) uint64 { return uint64(max(0, ns)) }

// clampCount converts a dropped-item count to OTLP's uint32.
func clampCount(n int) uint64 { return uint64(min(max(0, int64(n)), math.MaxUint32)) }

// Small appenders the compiler inlines (protowire's AppendVarint is an
// unrolled function too large to inline, and most of what is appended here
// is one-byte tags and lengths).

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return appendVarint(b, uint64(num)<<3|uint64(typ&7))
}

func appendString(b []byte, s string) []byte {
	return append(appendVarint(b, uint64(len(s))), s...)
}

func appendBytes(b []byte, v []byte) []byte {
	return append(appendVarint(b, uint64(len(v))), v...)
}

func appendFixed64(b []byte, v uint64) []byte {
	return binary.LittleEndian.AppendUint64(b, v)
}

func appendFixed32(b []byte, v uint32) []byte {
	return binary.LittleEndian.AppendUint32(b, v)
}
