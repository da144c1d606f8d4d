package tracing

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// randomSpanBatch fills a batch with spans of random sizes (below and above
// minLent per group) under two resources and three scopes.
func randomSpanBatch(rng *rand.Rand) *spanBatch {
	resources := []*resource.Resource{
		resource.NewSchemaless(attribute.String("service.name", "vserve")),
		resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0", attribute.String("service.name", "other")),
	}
	scopes := []instrumentation.Scope{{Name: ScopeAPI}, {Name: ScopeScheduler, Version: "1"}, {Name: ScopeStep, SchemaURL: "s"}}
	b := &spanBatch{}
	for range 1 + rng.IntN(40) {
		span := make([]byte, 1+rng.IntN(3000))
		for i := range span {
			span[i] = byte(rng.Uint32())
		}
		b.add(resources[rng.IntN(len(resources))], scopes[rng.IntN(len(scopes))],
			encodedSpan{head: span[:len(span)/2], tail: span[len(span)/2:]})
	}
	return b
}

func TestSpanCodecSendsWhatProtoMarshalWould(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lentSome := false
	for range 200 {
		req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: randomSpanBatch(rng).request()}
		want, err := proto.Marshal(req)
		require.NoError(t, err)

		codec, _ := newSpanCodec()
		data, err := codec.Marshal(req)
		require.NoError(t, err)
		lentSome = lentSome || codec.lent.held()
		require.Equal(t, want, data.Materialize())
		data.Free()
		require.False(t, codec.lent.held(), "every reference is returned once gRPC frees it")
	}
	require.True(t, lentSome, "some batches' spans are referenced, not copied")
}

func TestSpanCodecMarshalsOtherMessagesAsTheStockCodec(t *testing.T) {
	codec, _ := newSpanCodec()
	for _, m := range []proto.Message{
		&coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 3}},
		&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{Name: "s", TraceId: make([]byte, 16)}}}},
		}}},
	} {
		want, err := proto.Marshal(m)
		require.NoError(t, err)
		data, err := codec.Marshal(m)
		require.NoError(t, err)
		require.Equal(t, want, data.Materialize())
		data.Free()
	}
	require.False(t, codec.lent.held())
}

// holdingClient marshals each request with a spanCodec, as the gRPC
// client does, and holds the first request's buffers (as gRPC's writer
// may past a cancelled call) until release.
type holdingClient struct {
	captureClient
	codec   *spanCodec
	mu      sync.Mutex
	held    mem.BufferSlice
	copyOf  []byte // the held bytes when they were sent
	uploads int
}

func (c *holdingClient) UploadTraces(ctx context.Context, rs []*tracepb.ResourceSpans) error {
	data, err := c.codec.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rs})
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.uploads++
	if c.uploads == 1 {
		c.held, c.copyOf = data, data.Materialize()
		return nil
	}
	data.Free()
	return nil
}

func (c *holdingClient) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held.Free()
}

func TestExportProcessorDoesNotReuseBuffersGRPCHolds(t *testing.T) {
	codec, _ := newSpanCodec()
	client := &holdingClient{codec: codec}
	p, err := newExportProcessor(context.Background(), client, codec.lent, Config{MaxExportQueue: 1 << 20, ExportTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })

	rng := rand.New(rand.NewPCG(3, 4))
	sendBatch := func() {
		src := randomSpanBatch(rng)
		for _, g := range src.groups {
			if len(g.enc) > 0 {
				p.enqueue(g.res, g.scope, encodedSpan{head: g.enc}, nil)
			}
		}
		require.NoError(t, p.ForceFlush(context.Background()))
	}
	sendBatch()
	require.True(t, codec.lent.held(), "the first request's large spans are lent")
	for range 5 {
		sendBatch()
		require.True(t, bytes.Equal(client.copyOf, client.held.Materialize()),
			"bytes that gRPC holds are never overwritten by a later batch")
	}
	client.release()
	require.False(t, codec.lent.held())
	sendBatch()
	p.mu.Lock()
	defer p.mu.Unlock()
	require.NotEmpty(t, p.free, "once gRPC let go, batches are kept for reuse again")
	require.Positive(t, p.free[len(p.free)-1].capacity())
}

// traceCollector is a gRPC OTLP trace receiver with the stock codec.
type traceCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu   sync.Mutex
	reqs []*coltracepb.ExportTraceServiceRequest
}

func (c *traceCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *traceCollector) spans() []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tracepb.Span
	for _, r := range c.reqs {
		for _, rs := range r.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out
}

// TestGRPCExportThroughSpanCodec sends step windows and journeys through
// the real OTLP gRPC client to a stock gRPC receiver, which decodes them.
func TestGRPCExportThroughSpanCodec(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	col := &traceCollector{}
	coltracepb.RegisterTraceServiceServer(srv, col)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	c := DefaultConfig()
	c.OTLPTracesEndpoint, c.Protocol = ln.Addr().String(), ProtocolGRPC
	c.EnableJourneyTracing = true
	c.StepTracingEnabled, c.StepSampleRate, c.StepRichSubsampleRate = true, 1, 1
	tel, err := Setup(context.Background(), c)
	require.NoError(t, err)
	sim := newBenchSim(tel, 8)
	for range 10 {
		sim.run()
	}
	require.NoError(t, tel.Shutdown(context.Background()))

	names := map[string]int{}
	events := 0
	for _, s := range col.spans() {
		names[s.Name]++
		events += len(s.Events)
	}
	require.Equal(t, 80, names[SpanRequest])
	require.Equal(t, 80, names[SpanCore])
	require.Positive(t, names[SpanStepPrefix+"1"])
	require.Greater(t, events, 80*4, "the spans arrive with their events")
}
