package tracing

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// TestEventBuilderReusesBufferSafely: events built in one reused buffer,
// with changing attribute counts (more than the option cache holds) and a
// foreign slice, each keep exactly their own attributes and timestamp.
func TestEventBuilderReusesBufferSafely(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, span := tp.Tracer("t").Start(context.Background(), "s")
	var arr [4]attribute.KeyValue
	b := newEventBuilder(arr[:])
	base := time.Unix(1000, 0)
	counts := []int{1, 3, 4, 2, 3, 1, 4, 0}
	for i, n := range counts {
		attrs := b.buf()
		for k := 0; k < n; k++ {
			attrs = append(attrs, attribute.Int("k", i*10+k))
		}
		b.add(span, "e", base.Add(time.Duration(i)*time.Second), attrs)
	}
	foreign := []attribute.KeyValue{attribute.String("a", "1"), attribute.String("b", "2"),
		attribute.String("c", "3"), attribute.String("d", "4"), attribute.String("e", "5")}
	b.add(span, "foreign", base, foreign)
	b.add(span, "foreign", base, foreign[:2]) // short enough for the buffer, but not it
	require.Equal(t, "1", foreign[0].Value.AsString(), "a foreign slice is left alone")
	span.End()
	require.NoError(t, tp.Shutdown(context.Background()))

	events := rec.Ended()[0].Events()
	require.Len(t, events, len(counts)+2)
	for i, n := range counts {
		e := events[i]
		require.Equal(t, base.Add(time.Duration(i)*time.Second), e.Time, "event %d", i)
		require.Len(t, e.Attributes, n, "event %d", i)
		for k, kv := range e.Attributes {
			require.Equal(t, int64(i*10+k), kv.Value.AsInt64(), "event %d attr %d", i, k)
		}
	}
	last := events[len(counts)]
	require.Equal(t, "foreign", last.Name)
	require.Len(t, last.Attributes, 5)
	require.Equal(t, "5", last.Attributes[4].Value.AsString())
	require.Len(t, events[len(counts)+1].Attributes, 2)
	require.Equal(t, arr, [4]attribute.KeyValue{}, "the buffer is cleared after each event")
}

// TestW3CHeadersExtractLikeHeaderCarrier: the allocation-free carrier,
// read by remoteParent, gives the same span context (traceparent and
// tracestate) as Extract through the standard one, whatever case the
// client used.
func TestW3CHeadersExtractLikeHeaderCarrier(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
	}{
		{"none", nil},
		{"lower", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "k=v,a=b"}},
		{"upper", map[string]string{"TRACEPARENT": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "TraceState": "x=y"}},
		{"invalid", map[string]string{"traceparent": "00-zz-00f067aa0ba902b7-01"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			want := trace.SpanContextFromContext(w3c.Extract(context.Background(), propagation.HeaderCarrier(h)))
			got := remoteParent(w3cHeaders(h))
			require.True(t, want.Equal(got), "want %v got %v", want, got)
			require.Equal(t, want.TraceState().String(), got.TraceState().String())
		})
	}
}

// TestKeyedAttributesEncodeAsKeyValues: the keyed writer of frequent
// events (and of llm_request's attributes) encodes exactly as the general
// encoder does, as event and as span attributes, over keys and values
// whose lengths take one- and two-byte varints, and ints of every varint
// size (negative ones take ten bytes).
func TestKeyedAttributesEncodeAsKeyValues(t *testing.T) {
	long := strings.Repeat("k", 200)
	write := func(f func(w *eventAttrs)) []byte {
		w := eventAttrs{otlp: true}
		f(&w)
		return w.enc
	}
	ints := []int64{0, 1, 127, 128, 1 << 40, -1, math.MinInt64, math.MaxInt64}
	for shift := 0; shift < 64; shift += 7 {
		ints = append(ints, 1<<shift, 1<<shift-1)
	}
	for _, field := range []protowire.Number{eventAttributes, spanAttributes} {
		for _, key := range []string{"", "step.id", long} {
			k := newAttributeKey(key, field)
			for _, v := range ints {
				require.Equal(t, appendKeyValue(nil, field, attribute.Int64(key, v)),
					write(func(w *eventAttrs) { w.int(k, v) }), "field %d key %q, int %d", field, key, v)
			}
			for _, v := range []float64{0, -0.5, math.Inf(1)} {
				require.Equal(t, appendKeyValue(nil, field, attribute.Float64(key, v)),
					write(func(w *eventAttrs) { w.float(k, v) }), "field %d key %q, float %v", field, key, v)
			}
			for _, v := range []string{"", "decode", long} {
				require.Equal(t, appendKeyValue(nil, field, attribute.String(key, v)),
					write(func(w *eventAttrs) { w.str(k, v) }), "field %d key %q, string %q", field, key, v)
			}
		}
	}
}
