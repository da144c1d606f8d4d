package tracing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// captureClient is an otlptrace.Client that marshals each request as the
// gRPC client does (spanCodec), requires the bytes that the stock codec
// (proto.Marshal of an ExportTraceServiceRequest) would send, and keeps
// them: what a collector would receive.
type captureClient struct {
	mu       sync.Mutex
	started  bool
	stopped  bool
	requests [][]byte
	startErr error
}

func (c *captureClient) Start(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started = true
	return c.startErr
}

func (c *captureClient) Stop(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	return nil
}

func (c *captureClient) UploadTraces(_ context.Context, rs []*tracepb.ResourceSpans) error {
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: rs}
	want, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	codec, _ := newSpanCodec()
	data, err := codec.Marshal(req)
	if err != nil {
		return err
	}
	b := data.Materialize()
	data.Free()
	if !bytes.Equal(b, want) {
		return fmt.Errorf("spanCodec marshalled %d bytes unlike proto.Marshal's %d", len(b), len(want))
	}
	if codec.lent.held() {
		return errors.New("spanCodec: buffers still lent after Free")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = append(c.requests, b)
	return nil
}

// received decodes the one request the client got.
func (c *captureClient) received(t *testing.T) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Len(t, c.requests, 1)
	var req coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(c.requests[0], &req))
	return &req
}

// newTestProcessor returns an export processor over client whose batches
// are limited only by the test's settings; Shutdown runs at cleanup.
func newTestProcessor(t testing.TB, client otlptrace.Client) *exportProcessor {
	t.Helper()
	p, err := newExportProcessor(context.Background(), client, nil, Config{MaxExportQueue: 1 << 20, ExportTimeout: 10 * time.Second})
	require.NoError(t, err)
	p.maxBatchSpans, p.maxQueueBytes = 1<<20, math.MaxInt
	t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })
	return p
}

// send adds the non-nil spans to p and flushes them.
func send(t testing.TB, p *exportProcessor, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	for _, s := range spans {
		if s != nil {
			p.add(s)
		}
	}
	require.NoError(t, p.ForceFlush(context.Background()))
}

// exportBoth sends spans through the stock exporter and through
// exportProcessor and returns what each collector would have decoded, with
// the resource entries in one order (the stock transform's order follows
// map iteration).
func exportBoth(t *testing.T, spans []sdktrace.ReadOnlySpan) (stock, wire *coltracepb.ExportTraceServiceRequest) {
	t.Helper()
	ctx := context.Background()
	var sc, wc captureClient
	se, err := otlptrace.New(ctx, &sc)
	require.NoError(t, err)
	p := newTestProcessor(t, &wc)
	p.maxRequestBytes = math.MaxInt // one request, as the stock exporter sends (splitting has its own test)
	require.NoError(t, se.ExportSpans(ctx, spans))
	send(t, p, spans)
	stock, wire = sc.received(t), wc.received(t)
	sortResourceSpans(t, stock)
	sortResourceSpans(t, wire)
	return stock, wire
}

func sortResourceSpans(t *testing.T, req *coltracepb.ExportTraceServiceRequest) {
	key := func(rs *tracepb.ResourceSpans) []byte {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rs.Resource)
		require.NoError(t, err)
		return b
	}
	slices.SortStableFunc(req.ResourceSpans, func(a, b *tracepb.ResourceSpans) int { return bytes.Compare(key(a), key(b)) })
}

func requireSameRequest(t *testing.T, stock, wire *coltracepb.ExportTraceServiceRequest) {
	t.Helper()
	if !proto.Equal(stock, wire) {
		t.Fatalf("wire encoding differs from the stock transform\nstock:\n%s\nwire:\n%s",
			prototext.Format(stock), prototext.Format(wire))
	}
}

var (
	traceA  = trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	spanA   = trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	spanB   = trace.SpanID{0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8}
	baseNow = time.Date(2026, 11, 29, 1, 2, 3, 456789, time.UTC)
)

// everyAttributeType has one attribute of each type the API has, with
// zero values where a oneof must still be written, and long values whose
// lengths need multi-byte varints.
func everyAttributeType() []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.Bool("b", false), attribute.Bool("b1", true),
		attribute.Int64("i", 0), attribute.Int64("neg", -7), attribute.Int("big", 1<<62),
		attribute.Float64("f", 0), attribute.Float64("pi", 3.25),
		attribute.String("s", ""), attribute.String("long", strings.Repeat("x", 200)),
		attribute.String("longer", strings.Repeat("y", 20000)),
		attribute.BoolSlice("bs", []bool{true, false}), attribute.BoolSlice("bs0", nil),
		attribute.Int64Slice("is", []int64{1, -2, 3}), attribute.Float64Slice("fs", []float64{0.5, 0}),
		attribute.StringSlice("ss", []string{"a", "", "c"}),
		attribute.ByteSlice("bytes", []byte{0, 1, 2}), attribute.ByteSlice("bytes0", nil),
		attribute.Slice("mixed", attribute.IntValue(1), attribute.StringValue("two"), attribute.SliceValue(attribute.BoolValue(true))),
		attribute.Map("map", attribute.String("k", "v"), attribute.Int("n", 2)),
		{Key: "empty"}, // an EMPTY value
	}
}

func TestExportProcessorMatchesStockTransform(t *testing.T) {
	res1 := resource.NewSchemaless(attribute.String("service.name", "vserve"))
	res2 := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0", attribute.String("service.name", "other"), attribute.Int("pid", 1))
	scopeAPI := instrumentation.Scope{Name: "vllm.api"}
	scopeFull := instrumentation.Scope{Name: "vllm.scheduler", Version: "1.2", SchemaURL: "https://example.com/s",
		Attributes: attribute.NewSet(attribute.String("a", "b"))}
	remoteParent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceA, SpanID: spanB, Remote: true,
		TraceFlags: trace.FlagsSampled})
	localParent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceA, SpanID: spanB})
	state, err := trace.ParseTraceState("vendor=opaque,other=1")
	require.NoError(t, err)

	stubs := tracetest.SpanStubs{
		{ // a journey-style span: remote parent, events, error status
			Name: "llm_request", SpanKind: trace.SpanKindServer, Resource: res1, InstrumentationScope: scopeAPI,
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceA, SpanID: spanA, TraceFlags: trace.FlagsSampled, TraceState: state}),
			Parent:      remoteParent, StartTime: baseNow, EndTime: baseNow.Add(time.Second),
			Attributes: everyAttributeType(),
			Events: []sdktrace.Event{
				{Name: "api.ARRIVED", Time: baseNow, Attributes: []attribute.KeyValue{attribute.Float64("event.ts.monotonic", 12.5)}},
				{Name: "no attributes", Time: baseNow.Add(time.Millisecond), DroppedAttributeCount: 3},
				{Name: "", Time: time.Time{}},
			},
			Status:            sdktrace.Status{Code: codes.Error, Description: "client_disconnect"},
			DroppedAttributes: 2, DroppedEvents: 5, DroppedLinks: 1, ChildSpanCount: 4,
		},
		{ // local parent, links, ok status, another scope with attributes
			Name: "llm_core", SpanKind: trace.SpanKindInternal, Resource: res1, InstrumentationScope: scopeFull,
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceA, SpanID: spanB}),
			Parent:      localParent, StartTime: baseNow, EndTime: baseNow.Add(2 * time.Second),
			Links: []sdktrace.Link{
				{SpanContext: remoteParent, Attributes: everyAttributeType()[:4], DroppedAttributeCount: 1},
				{SpanContext: localParent},
			},
			Status: sdktrace.Status{Code: codes.Ok},
		},
		{ // no parent, unset status with a description, pre-1970 start, odd kinds; the first scope again
			Name: "scheduler_steps_1", SpanKind: trace.SpanKind(9), Resource: res1, InstrumentationScope: scopeAPI,
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceA, SpanID: trace.SpanID{1}}),
			StartTime:   time.Unix(-5, 0), EndTime: baseNow, Status: sdktrace.Status{Description: "ignored"},
		},
		{Name: "client", SpanKind: trace.SpanKindClient, Resource: res2, InstrumentationScope: scopeAPI},
		{Name: "producer", SpanKind: trace.SpanKindProducer, Resource: res2},
		{Name: "consumer", SpanKind: trace.SpanKindConsumer, Resource: res2, InstrumentationScope: scopeFull},
		{Name: "no resource", SpanKind: trace.SpanKindUnspecified},
	}
	spans := slices.Insert(stubs.Snapshots(), 2, nil) // the stock transform skips nil spans
	stock, wire := exportBoth(t, spans)
	requireSameRequest(t, stock, wire)
	require.Len(t, wire.ResourceSpans, 3, "three resources: res1, res2 and none")
}

// TestExportProcessorMatchesStockOnRandomSpans compares the two encodings on
// spans with random names, attributes, events and links.
func TestExportProcessorMatchesStockOnRandomSpans(t *testing.T) {
	for seed := range uint64(20) {
		stock, wire := exportBoth(t, randomSpans(rand.New(rand.NewPCG(seed, 7)), 40))
		requireSameRequest(t, stock, wire)
	}
}

// FuzzExportProcessor grows the random comparison from fuzzed seeds.
func FuzzExportProcessor(f *testing.F) {
	f.Add(uint64(1), uint8(3))
	f.Add(uint64(99), uint8(200))
	f.Fuzz(func(t *testing.T, seed uint64, n uint8) {
		stock, wire := exportBoth(t, randomSpans(rand.New(rand.NewPCG(seed, 11)), int(n)%64+1))
		requireSameRequest(t, stock, wire)
	})
}

func randomSpans(r *rand.Rand, n int) []sdktrace.ReadOnlySpan {
	res := resource.NewSchemaless(attribute.String("service.name", "vserve"))
	scopes := []instrumentation.Scope{{Name: "vllm.api"}, {Name: "vllm.scheduler"}, {Name: "vllm.scheduler.step"}}
	stubs := make(tracetest.SpanStubs, n)
	for i := range stubs {
		var tid trace.TraceID
		var sid, pid trace.SpanID
		for j := range tid {
			tid[j] = byte(r.Uint32())
		}
		for j := range sid {
			sid[j], pid[j] = byte(r.Uint32()), byte(r.Uint32())
		}
		s := &stubs[i]
		s.Name = randomString(r)
		s.SpanKind = trace.SpanKind(r.IntN(6))
		s.Resource, s.InstrumentationScope = res, scopes[r.IntN(len(scopes))]
		s.SpanContext = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(r.IntN(2))})
		if r.IntN(2) == 0 {
			s.Parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: pid, Remote: r.IntN(2) == 0})
		}
		s.StartTime = baseNow.Add(time.Duration(r.Int64N(int64(time.Hour))))
		s.EndTime = s.StartTime.Add(time.Duration(r.Int64N(int64(time.Second))))
		s.Attributes = randomAttributes(r)
		for range r.IntN(40) {
			s.Events = append(s.Events, sdktrace.Event{Name: randomString(r), Time: s.StartTime.Add(time.Duration(r.IntN(1000))),
				Attributes: randomAttributes(r), DroppedAttributeCount: r.IntN(3)})
		}
		s.Status = sdktrace.Status{Code: codes.Code(r.IntN(3)), Description: randomString(r)}
		s.DroppedEvents = r.IntN(2)
	}
	return stubs.Snapshots()
}

func randomAttributes(r *rand.Rand) []attribute.KeyValue {
	all := everyAttributeType()
	kvs := make([]attribute.KeyValue, r.IntN(16))
	for i := range kvs {
		switch r.IntN(4) {
		case 0:
			kvs[i] = all[r.IntN(len(all))]
		case 1:
			kvs[i] = attribute.Int64(randomString(r), r.Int64()-r.Int64())
		case 2:
			kvs[i] = attribute.Float64(randomString(r), r.NormFloat64())
		default:
			kvs[i] = attribute.String(randomString(r), randomString(r))
		}
	}
	return kvs
}

func randomString(r *rand.Rand) string {
	b := make([]byte, r.IntN(3)*r.IntN(100))
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

func TestExportProcessorLifecycle(t *testing.T) {
	ctx := context.Background()
	c := &captureClient{}
	p, err := newExportProcessor(ctx, c, nil, Config{MaxExportQueue: 16, ExportTimeout: time.Second})
	require.NoError(t, err)
	require.True(t, c.started)
	require.NoError(t, p.ForceFlush(ctx), "nothing to export is not an error")
	require.Empty(t, c.requests, "no empty requests")
	unsampled := tracetest.SpanStubs{{Name: "unsampled"}}.Snapshots()[0]
	p.OnEnd(unsampled)
	require.NoError(t, p.ForceFlush(ctx))
	require.Empty(t, c.requests, "unsampled spans are not exported, as with the batch span processor")
	p.OnEnd(sampledSpan("before shutdown"))
	require.NoError(t, p.Shutdown(ctx))
	require.True(t, c.stopped)
	require.Len(t, c.requests, 1, "shutdown sends what is queued")
	require.NoError(t, p.Shutdown(ctx), "a second shutdown is a no-op")
	p.OnEnd(sampledSpan("late"))
	require.NoError(t, p.ForceFlush(ctx))
	require.Len(t, c.requests, 1, "spans ending after shutdown are dropped")

	failing := &captureClient{startErr: errors.New("no TLS config")}
	_, err = newExportProcessor(ctx, failing, nil, Config{MaxExportQueue: 16})
	require.ErrorContains(t, err, "no TLS config")
}

func sampledSpan(name string) sdktrace.ReadOnlySpan {
	return tracetest.SpanStubs{{Name: name, SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceA, SpanID: spanA, TraceFlags: trace.FlagsSampled})}}.Snapshots()[0]
}

// TestExportProcessorReusesItsBuffers: a batch must not carry the spans of
// the batch whose buffers it reuses, whatever their sizes.
func TestExportProcessorReusesItsBuffers(t *testing.T) {
	ctx := context.Background()
	c := &captureClient{}
	p := newTestProcessor(t, c)
	p.maxRequestBytes = math.MaxInt // one request per flush
	r := rand.New(rand.NewPCG(3, 4))
	first, second := randomSpans(r, 30), randomSpans(r, 2)
	send(t, p, first)
	send(t, p, second)
	require.Len(t, c.requests, 2)
	var stockC captureClient
	se, err := otlptrace.New(ctx, &stockC)
	require.NoError(t, err)
	require.NoError(t, se.ExportSpans(ctx, second))
	var got, want coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(c.requests[1], &got))
	require.NoError(t, proto.Unmarshal(stockC.requests[0], &want))
	sortResourceSpans(t, &got)
	sortResourceSpans(t, &want)
	requireSameRequest(t, &want, &got)
}

// TestExportProcessorSplitsLargeBatches: with a small request limit, spans
// go out in several requests, none over the limit (but for a span that
// alone exceeds it), and together they hold exactly the stock request's
// spans under the same resources and scopes.
func TestExportProcessorSplitsLargeBatches(t *testing.T) {
	ctx := context.Background()
	spans := randomSpans(rand.New(rand.NewPCG(5, 6)), 60)
	var stockC, wireC captureClient
	se, err := otlptrace.New(ctx, &stockC)
	require.NoError(t, err)
	require.NoError(t, se.ExportSpans(ctx, spans))
	p := newTestProcessor(t, &wireC)
	p.maxRequestBytes = 8 << 10
	send(t, p, spans)
	require.Greater(t, len(wireC.requests), 3, "60 random spans exceed 8 KiB several times over")

	biggest := 0
	for _, s := range spans {
		biggest = max(biggest, encodedSpan{head: appendSpanHead(nil, s), tail: appendSpanTail(nil, s)}.size())
	}
	var got []string
	for _, b := range wireC.requests {
		require.LessOrEqual(t, len(b), max(p.maxRequestBytes, biggest)+1024, "a request holds at most the limit of spans plus resource and scope framing")
		got = append(got, flattenSpans(t, b)...)
	}
	want := flattenSpans(t, stockC.requests[0])
	slices.Sort(got)
	slices.Sort(want)
	require.Equal(t, want, got)
}

// flattenSpans decodes a request into one line per span: its resource,
// scope and span in deterministic text form.
func flattenSpans(t *testing.T, b []byte) []string {
	var req coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(b, &req))
	var out []string
	text := prototext.MarshalOptions{}
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				out = append(out, text.Format(rs.Resource)+"|"+rs.SchemaUrl+"|"+text.Format(ss.Scope)+"|"+ss.SchemaUrl+"|"+text.Format(s))
			}
		}
	}
	return out
}

// captureErrors routes otel.Handle to a slice for the test's duration.
func captureErrors(t *testing.T) func() []string {
	var mu sync.Mutex
	var got []string
	prev := otel.GetErrorHandler()
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, err.Error())
	}))
	t.Cleanup(func() { otel.SetErrorHandler(prev) })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// TestExportProcessorReportsFailedUploads: each failed request is reported
// with the number of spans it held, releases its share of the queue, and
// does not stop later batches.
func TestExportProcessorReportsFailedUploads(t *testing.T) {
	errs := captureErrors(t)
	c := &failingClient{}
	p := newTestProcessor(t, c)
	p.maxQueueSpans = 40
	p.maxRequestBytes = math.MaxInt
	send(t, p, randomSpans(rand.New(rand.NewPCG(5, 6)), 30))
	send(t, p, randomSpans(rand.New(rand.NewPCG(7, 8)), 30))
	require.Equal(t, 2, c.uploads(), "the second batch is sent although the first failed")
	require.Equal(t, []string{
		"traces export: collector unavailable (30 spans not sent)",
		"traces export: collector unavailable (30 spans not sent)",
	}, errs())
	p.mu.Lock()
	require.Zero(t, p.queuedSpans, "failed batches leave the queue")
	require.Zero(t, p.queuedBytes)
	p.mu.Unlock()
	st := p.state()
	require.Equal(t, exportTotals{queued: 60, failed: map[string]int64{"_OTHER": 60}}, st.exportTotals,
		"the failed spans are counted by their error's type")
}

type failingClient struct {
	mu    sync.Mutex
	calls int
}

func (*failingClient) Start(context.Context) error { return nil }
func (*failingClient) Stop(context.Context) error  { return nil }
func (c *failingClient) UploadTraces(context.Context, []*tracepb.ResourceSpans) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return errors.New("collector unavailable")
}

func (c *failingClient) uploads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// blockingClient's uploads wait until release is closed or their context
// ends, like a collector that does not answer.
type blockingClient struct {
	captureClient
	release chan struct{}
	entered chan struct{} // receives once per upload that started
	unblock func()        // closes release (once)
}

func newBlockingClient() *blockingClient {
	c := &blockingClient{release: make(chan struct{}), entered: make(chan struct{}, 64)}
	c.unblock = sync.OnceFunc(func() { close(c.release) })
	return c
}

func (c *blockingClient) UploadTraces(ctx context.Context, rs []*tracepb.ResourceSpans) error {
	c.entered <- struct{}{}
	select {
	case <-c.release:
		return c.captureClient.UploadTraces(ctx, rs)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestExportProcessorBoundsItsQueue: while the collector hangs, spans past
// the queue's bound are dropped at once (OnEnd never waits), the drop is
// reported, and what was queued is sent once the collector answers.
func TestExportProcessorBoundsItsQueue(t *testing.T) {
	errs := captureErrors(t)
	c := newBlockingClient()
	p := newTestProcessor(t, c)
	t.Cleanup(c.unblock) // before the processor's shutdown, should the test fail
	p.maxBatchSpans, p.maxQueueSpans = 4, 10
	for i := range 4 {
		p.OnEnd(sampledSpan(fmt.Sprint("first batch ", i)))
	}
	<-c.entered // the first batch of 4 is being uploaded and hangs
	for i := range 20 {
		p.OnEnd(sampledSpan(fmt.Sprint("later ", i)))
	}
	p.mu.Lock()
	queued, dropped := p.queuedSpans, p.dropped
	p.mu.Unlock()
	require.Equal(t, 10, queued, "the queue holds its bound")
	require.Equal(t, 14, dropped)
	require.Equal(t, exportState{exportTotals: exportTotals{queued: 10, dropped: 14}, queueSpans: 10, queueCapacity: 10}, p.state())
	c.unblock()
	require.NoError(t, p.ForceFlush(context.Background()))
	require.Equal(t, exportState{exportTotals: exportTotals{queued: 10, dropped: 14, sent: 10}, queueCapacity: 10}, p.state(),
		"the sent spans are counted, and the queue is empty")
	var names []string
	for _, b := range c.requests {
		for _, line := range flattenSpans(t, b) {
			names = append(names, line[strings.LastIndex(line, "name:"):])
		}
	}
	require.Len(t, names, 10, "the 10 queued spans are sent")
	require.Contains(t, errs(), "traces export: 14 spans dropped: the export queue (10 spans, "+fmt.Sprint(math.MaxInt)+" bytes) was full")
}

// TestExportProcessorShutdownGivesUpWithItsContext: a shutdown whose
// context ends while the collector hangs cancels the upload and returns.
func TestExportProcessorShutdownGivesUpWithItsContext(t *testing.T) {
	captureErrors(t)
	c := newBlockingClient()
	t.Cleanup(c.unblock)
	p, err := newExportProcessor(context.Background(), c, nil, Config{MaxExportQueue: 16, ExportTimeout: time.Hour})
	require.NoError(t, err)
	p.OnEnd(sampledSpan("stuck"))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-c.entered
		cancel()
	}()
	require.ErrorIs(t, p.Shutdown(ctx), context.Canceled)
	require.True(t, c.stopped)
	require.Empty(t, c.requests)
}

// TestExportProcessorSendsOnSchedule: without a flush, queued spans are sent
// after OTEL_BSP_SCHEDULE_DELAY, as with the batch span processor.
func TestExportProcessorSendsOnSchedule(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
	c := &captureClient{}
	p := newTestProcessor(t, c)
	require.Equal(t, 20*time.Millisecond, p.scheduleDelay)
	p.OnEnd(sampledSpan("scheduled"))
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.requests) == 1
	}, 10*time.Second, 5*time.Millisecond)
}

func TestExportProcessorDropsHugeBuffers(t *testing.T) {
	p := newTestProcessor(t, &captureClient{})
	send(t, p, tracetest.SpanStubs{{Name: "small"}}.Snapshots())
	p.mu.Lock()
	kept := len(p.free)
	p.mu.Unlock()
	require.Equal(t, 1, kept, "a small batch is kept for reuse")
	huge := tracetest.SpanStubs{{Name: "huge", Attributes: []attribute.KeyValue{
		attribute.String("big", strings.Repeat("z", maxRetainedExportBuffer+1))}}}.Snapshots()
	send(t, p, huge)
	p.mu.Lock()
	defer p.mu.Unlock()
	require.NotEmpty(t, p.free)
	for _, b := range p.free {
		for _, g := range b.groups {
			require.LessOrEqual(t, cap(g.enc), maxRetainedExportBuffer,
				"the buffer that held the huge span, over maxRetainedExportBuffer, is not kept")
		}
	}
}

// TestExportProcessorBoundsItsFreeBatches: uploaded batches are kept for
// reuse up to maxFreeBatchBytes of buffers (several full batches of step
// windows, not two), and taking one back releases its share.
func TestExportProcessorBoundsItsFreeBatches(t *testing.T) {
	p := newTestProcessor(t, &captureClient{})
	p.mu.Lock()
	p.queuedSpans, p.queuedBytes = 20, 20*defaultMaxRequestBytes // as if the batches were queued
	p.mu.Unlock()
	for range 20 {
		p.recycle(fullStepBatch(), nil)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := 0
	for _, b := range p.free {
		kept += b.capacity()
	}
	require.Equal(t, kept, p.freeBytes)
	require.LessOrEqual(t, p.freeBytes, p.maxFreeBytes)
	require.Greater(t, p.freeBytes, p.maxFreeBytes-2*defaultMaxRequestBytes, "batches are kept up to the bound")
	b := p.batchLocked()
	require.Equal(t, kept-b.capacity(), p.freeBytes, "a batch taken back releases its share")
}

// fullStepBatch is a batch holding one step window of almost the request
// limit.
func fullStepBatch() *spanBatch {
	b := &spanBatch{}
	b.add(resource.Empty(), instrumentation.Scope{Name: ScopeStep}, encodedSpan{events: make([]byte, defaultMaxRequestBytes-64)})
	return b
}

// TestExportProcessorTrimsUnusedFreeBatches: a trim releases the free
// batches that no batch was taken from since the previous trim, the least
// recently used first, and keeps those in use.
func TestExportProcessorTrimsUnusedFreeBatches(t *testing.T) {
	p := newTestProcessor(t, &captureClient{})
	p.mu.Lock()
	p.queuedSpans, p.queuedBytes = 6, 6*defaultMaxRequestBytes
	p.mu.Unlock()
	var batches []*spanBatch
	for range 6 {
		b := fullStepBatch()
		batches = append(batches, b)
		p.recycle(b, nil)
	}
	p.trimFree() // nothing was counted yet: keeps all, starts counting
	require.Len(t, p.free, 6)

	p.mu.Lock()
	taken := []*spanBatch{p.batchLocked(), p.batchLocked()} // the two most recent
	p.mu.Unlock()
	p.mu.Lock()
	p.queuedSpans, p.queuedBytes = 2, 2*defaultMaxRequestBytes
	p.mu.Unlock()
	for _, b := range taken {
		p.recycle(b, nil)
	}
	p.trimFree()
	require.Equal(t, []*spanBatch{batches[5], batches[4]}, p.free, "the four never taken are released")
	require.Equal(t, taken[0].capacity()+taken[1].capacity(), p.freeBytes)

	p.trimFree()
	require.Empty(t, p.free, "unused since the last trim")
	require.Zero(t, p.freeBytes)
}

// TestSpanBatchKeepsEachScopesBuffer: a reused batch appends a scope's
// spans to the buffer that scope had before, whatever order the scopes
// come in, and sends its groups in this use's order of first appearance.
func TestSpanBatchKeepsEachScopesBuffer(t *testing.T) {
	res := resource.NewSchemaless(attribute.String("service.name", "test"))
	api, core, step := instrumentation.Scope{Name: ScopeAPI}, instrumentation.Scope{Name: ScopeScheduler}, instrumentation.Scope{Name: ScopeStep}
	window := encodedSpan{events: bytes.Repeat(appendEvent(nil, "e", time.Unix(1, 0), nil, 0), 1<<12)} // some 64 KiB of events
	var b spanBatch
	b.add(res, api, encodedSpan{})
	b.add(res, step, window)
	b.add(res, core, encodedSpan{})
	stepBuffer := &b.groups[1].enc[:1][0]
	b.reset()

	b.add(res, step, window)
	b.add(res, api, encodedSpan{})
	require.Len(t, b.groups, 3)
	require.Same(t, stepBuffer, &b.groups[1].enc[:1][0], "the step scope appends to its old buffer")
	rs := b.request()
	require.Len(t, rs, 1)
	wire, err := proto.Marshal(rs[0])
	require.NoError(t, err)
	var decoded tracepb.ResourceSpans // the shells carry their fields encoded
	require.NoError(t, proto.Unmarshal(wire, &decoded))
	var names []string
	for _, ss := range decoded.ScopeSpans {
		names = append(names, ss.Scope.Name)
	}
	require.Equal(t, []string{ScopeStep, ScopeAPI}, names, "this use's order; the empty scheduler group is left out")

	for i := range maxBatchGroups + 2 { // new scopes beyond the bound take over empty groups
		b.add(res, instrumentation.Scope{Name: fmt.Sprint("extra", i)}, encodedSpan{})
	}
	require.Len(t, b.groups, maxBatchGroups+4, "the empty scheduler group was taken over, the rest added")
	require.Equal(t, 2+maxBatchGroups+2, b.spans)
	b.reset()
	require.Len(t, b.groups, maxBatchGroups, "a reset batch keeps a bounded number of groups")
}

// TestGroupBuffersGrowByDoubling: a group's buffer grows to its working
// size in a few doublings (up to a request's worth at a time), not in the
// thirty-odd quarter steps of append, each a fresh allocation and a copy.
func TestGroupBuffersGrowByDoubling(t *testing.T) {
	res := resource.NewSchemaless(attribute.String("service.name", "test"))
	scope := instrumentation.Scope{Name: ScopeStep}
	span := encodedSpan{events: bytes.Repeat([]byte{1}, 1000)}
	var b spanBatch
	var caps []int
	for range 8000 { // 8 MB
		b.add(res, scope, span)
		if c := cap(b.groups[0].enc); len(caps) == 0 || caps[len(caps)-1] != c {
			caps = append(caps, c)
		}
	}
	require.Equal(t, minGroupBuffer, caps[0], "the first span takes the least buffer")
	for i := 1; i < len(caps); i++ {
		grew := caps[i] - caps[i-1]
		require.GreaterOrEqual(t, grew, min(caps[i-1], defaultMaxRequestBytes), "step %d: %d after %d", i, caps[i], caps[i-1])
	}
	require.LessOrEqual(t, len(caps), 10, "capacities %v", caps)
}

// BenchmarkSpanExport compares the stock exporter's transform with the
// export processor (encoding at OnEnd, batching, the upload goroutine) on
// the spans of 128 requests of the overhead benchmark's simulation (journey
// 1.0, steps 1.0, rich 0.1, batch 32), marshalled as the stock clients do.
func BenchmarkSpanExport(b *testing.B) {
	const requests = 128
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	c := DefaultConfig()
	c.SpanProcessors = []sdktrace.SpanProcessor{rec}
	c.EnableJourneyTracing = true
	c.StepTracingEnabled, c.StepSampleRate, c.StepRichSubsampleRate = true, 1, 0.1
	tel, err := Setup(ctx, c)
	require.NoError(b, err)
	sim := newBenchSim(tel, 32)
	for range requests / 32 {
		sim.run()
	}
	require.NoError(b, tel.Shutdown(ctx))
	spans := rec.Ended()
	stock, err := otlptrace.New(ctx, discardClient{})
	require.NoError(b, err)
	b.Run("stock", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := stock.ExportSpans(ctx, spans); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*requests)/1e3, "us/req")
	})
	b.Run("processor", func(b *testing.B) {
		p := newTestProcessor(b, discardClient{})
		b.ReportAllocs()
		for b.Loop() {
			send(b, p, spans)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*requests)/1e3, "us/req")
	})
}

// discardClient marshals requests like the stock clients and drops them.
type discardClient struct{}

func (discardClient) Start(context.Context) error { return nil }
func (discardClient) Stop(context.Context) error  { return nil }
func (discardClient) UploadTraces(_ context.Context, rs []*tracepb.ResourceSpans) error {
	_, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rs})
	return err
}

func TestExportErrorType(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{status.Error(grpccodes.Unavailable, "connection refused"), "Unavailable"},
		{fmt.Errorf("%w: %w", context.DeadlineExceeded, status.Error(grpccodes.ResourceExhausted, "too big")), "ResourceExhausted"},
		{fmt.Errorf("retry: %w", context.DeadlineExceeded), "timeout"},
		{errors.Join(context.Canceled, errors.New("Post: connection refused")), "canceled"},
		{status.Error(grpccodes.Unknown, "?"), "_OTHER"},
		{errors.New("failed to send: 503 Service Unavailable"), "_OTHER"},
	} {
		require.Equal(t, tc.want, exportErrorType(tc.err), "%v", tc.err)
	}
}

// TestDirectSpansKeepTheExportLimits: direct spans, encoded straight into
// the filling batch, keep the limits spans from the SDK keep: requests
// under the request limit (a span that does not fit moves to the next
// request, whole), every span once under its own scope, and spans past the
// queue's bound dropped and counted.
func TestDirectSpansKeepTheExportLimits(t *testing.T) {
	c := &captureClient{}
	p := newTestProcessor(t, c)
	p.maxRequestBytes = 2 << 10
	res := resource.NewSchemaless(attribute.String("service.name", "vserve"))
	tp := sdktrace.NewTracerProvider()
	direct := newDirectSpans(p, res, tp)
	starters := []*spanStarter{
		newSpanStarter(tp, ScopeAPI, SpanRequest, trace.SpanKindServer, direct),
		newSpanStarter(tp, ScopeScheduler, SpanCore, trace.SpanKindInternal, direct),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	at := time.Unix(1700000000, 0)
	var want []string
	for i := range 40 {
		j := starters[i%2]
		name := fmt.Sprint("span ", i)
		span := j.startNamed(context.Background(), name, at, attribute.Int("i", i)).(*directSpan)
		var events []byte
		for range rng.IntN(6) {
			var mark int
			events, mark = openEvent(events, "e", at)
			events = appendKeyValue(events, eventAttributes, attribute.String("pad", strings.Repeat("x", rng.IntN(300))))
			events = closeEvent(events, mark, 0)
		}
		size := len(events)
		if i%3 == 0 { // a span larger than its owner said moves once written
			size = 0
		}
		span.endWithContent(at.Add(time.Second), size, func(b []byte) []byte { return append(b, events...) })
		want = append(want, j.scope.Name+"|"+name)
	}
	require.NoError(t, p.ForceFlush(context.Background()))
	require.Greater(t, len(c.requests), 5, "40 spans of up to 2 KB need several 2 KiB requests")
	var got []string
	for _, b := range c.requests {
		var req coltracepb.ExportTraceServiceRequest
		require.NoError(t, proto.Unmarshal(b, &req))
		spans := 0
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					got = append(got, ss.Scope.GetName()+"|"+s.Name)
					spans++
				}
			}
		}
		require.True(t, len(b) <= p.maxRequestBytes+256 || spans == 1, "a request over the limit holds one span alone")
	}
	require.ElementsMatch(t, want, got)

	captureErrors(t)
	p.maxQueueSpans = 3 // with nothing queued; no batch is sealed before the next flush
	for i := range 5 {
		starters[0].startNamed(context.Background(), fmt.Sprint("late ", i), at).(*directSpan).endWithContent(at, 0, noContent)
	}
	st := p.state()
	require.Equal(t, int64(2), st.dropped, "past the queue's bound of 3 spans, 2 are dropped")
	require.Equal(t, int64(3), st.queueSpans)
}

// TestExportBatchSpansFromEnvironment: OTEL_BSP_MAX_EXPORT_BATCH_SIZE sets
// the most spans of one export request, as for the batch span processor:
// a positive number, at most the queue's size; anything else is the
// default.
func TestExportBatchSpansFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		env   string
		queue int
		want  int
	}{
		{"", 2048, maxBatchSpans},
		{"100", 2048, 100},
		{"4096", 2048, 2048},
		{"", 64, 64},
		{"0", 2048, maxBatchSpans},
		{"-5", 2048, maxBatchSpans},
		{"many", 2048, maxBatchSpans},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", tc.env)
			require.Equal(t, tc.want, exportBatchSpans(tc.queue))
		})
	}
}
