package tracing

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// exportProcessor is the span processor that exports ended spans over OTLP,
// in place of the SDK's batch span processor and otlptrace.Exporter. It
// encodes each span into OTLP protobuf (appendSpanHead, appendSpanTail)
// when the span ends and queues only those bytes (spans made without the
// SDK are encoded straight into the batch being filled: addDirect); a
// goroutine uploads them
// in batches through the stock OTLP client (otlptracegrpc.NewClient or
// otlptracehttp.NewClient: endpoint, TLS, headers, compression, retries,
// timeouts and the OTEL_EXPORTER_OTLP_* variables all behave as in the
// stock exporter).
//
// Why not the batch span processor: it queues each ended span's snapshot
// (attributes and events as heap objects, about 5 KB per journey span) and
// hands every span to its goroutine through a channel. Until a batch of 512
// fills, those snapshots are live heap that each garbage collection scans;
// in the overhead benchmark this cost more CPU per request than encoding
// them (docs/tracing-overhead.md has the figures). The encodings are plain
// bytes, and an ended span's snapshot is garbage at once.
//
// Bounds: at most maxQueueSpans spans and maxQueueBytes bytes wait; spans
// beyond are dropped, counted and reported through otel.Handle, and OnEnd
// never waits for the collector. A batch is sent when it holds
// maxBatchSpans spans, when adding a span would take it over
// maxRequestBytes (collectors reject larger messages: the OpenTelemetry
// Collector's and Jaeger's OTLP gRPC receivers take 4 MiB by default), and
// every scheduleDelay.
type exportProcessor struct {
	// What adding an ended span reads and writes comes first, in as few
	// cache lines as may be: in a server each span's end finds them
	// evicted by the serving code since the last.
	mu              sync.Mutex
	stopped         bool
	cur             *spanBatch // filling
	queuedSpans     int        // in cur and sealed
	queuedBytes     int
	maxRequestBytes int
	maxBatchSpans   int
	maxQueueSpans   int
	maxQueueBytes   int
	totals          exportTotals // since startup, for the SDK's own metrics
	contentBuilder  eventBuilder // writes direct spans' content (addDirect)

	scratch   [][]byte     // spare buffers to encode a span in outside the lock
	sealed    []*spanBatch // waiting for upload, oldest first
	free      []*spanBatch // uploaded, kept for reuse; the last is taken first
	freeBytes int          // their buffers' capacity
	freeLow   int          // the fewest free batches since the last trim
	dropped   int          // since the last report

	client        otlptrace.Client
	lent          *lentBuffers // gRPC's references to batch buffers (spanCodec); nil: none are lent
	maxFreeBytes  int          // bound of freeBytes
	exportTimeout time.Duration
	scheduleDelay time.Duration

	attachMu    sync.Mutex
	attached    map[trace.SpanID][]byte // encoded events of spans ending in endWithEvents
	numAttached atomic.Int32            // len(attached), read without the lock

	wake     chan struct{}      // capacity 1: a batch was sealed
	flush    chan chan struct{} // ForceFlush: closed once everything before it is sent
	stop     chan struct{}
	done     chan struct{} // closed when the goroutine has returned
	stopOnce sync.Once
	lastTrim time.Time       // of the free batches; the upload goroutine's
	base     context.Context // cancelled when Shutdown's context ends first
	cancel   context.CancelFunc
}

// Export limits.
const (
	// defaultMaxRequestBytes keeps requests under the common 4 MiB receive
	// limit with room for the resource, scopes and framing.
	defaultMaxRequestBytes = 3 << 20
	// maxRetainedExportBuffer is the largest buffer of a batch's group kept
	// for reuse: a batch of 512 journey spans needs about 0.6 MB, one of step
	// windows up to defaultMaxRequestBytes, and append's growth may leave a
	// quarter more capacity than that (a buffer dropped at every reuse was
	// regrown, with fresh pages, for every batch).
	maxRetainedExportBuffer = 2 * defaultMaxRequestBytes
	// queuedRequests bounds the bytes waiting: this many full requests.
	queuedRequests = 16
	// maxBatchSpans is the SDK batch span processor's default batch size.
	maxBatchSpans = 512
	// defaultScheduleDelay is the SDK's default OTEL_BSP_SCHEDULE_DELAY.
	defaultScheduleDelay = 5 * time.Second
	// Uploaded batches are kept for reuse up to the bytes the queue may
	// hold (maxQueueBytes). Spans can come much faster than uploads leave:
	// while every core of a server is busy, its upload goroutine hears from
	// the network only when the Go runtime's monitor polls it (every 10 ms
	// or so), and a 3 MB gRPC request needs many flow-control round trips.
	// A one-core server under the overhead tool's load sealed 15 batches
	// before its first upload ended. With 8 batches kept, such a server
	// still made new batches in every round of that load, each regrowing
	// its step windows' buffer from 0.2 to 3.3 MB on fresh pages.
	// Free batches that no batch needed for freeBatchIdle are released,
	// so that a burst's memory goes back once it is over.
	freeBatchIdle = time.Minute
	// spareScratch encoding buffers of at most maxRetainedScratch bytes are
	// kept: one per goroutine that ends spans at the same time.
	spareScratch       = 8
	maxRetainedScratch = 1 << 20
)

// newExportProcessor starts client and the upload goroutine; lent counts
// the batch buffers the client holds (nil: it copies what it sends).
func newExportProcessor(ctx context.Context, client otlptrace.Client, lent *lentBuffers, c Config) (*exportProcessor, error) {
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the OTLP client: %w", err)
	}
	p := &exportProcessor{
		client:          client,
		lent:            lent,
		maxRequestBytes: defaultMaxRequestBytes,
		maxBatchSpans:   exportBatchSpans(c.MaxExportQueue),
		maxQueueSpans:   c.MaxExportQueue,
		maxQueueBytes:   queuedRequests * defaultMaxRequestBytes,
		maxFreeBytes:    queuedRequests * defaultMaxRequestBytes,
		lastTrim:        time.Now(),
		exportTimeout:   c.ExportTimeout,
		scheduleDelay:   scheduleDelay(),
		wake:            make(chan struct{}, 1),
		flush:           make(chan chan struct{}),
		stop:            make(chan struct{}),
		done:            make(chan struct{}),
		attached:        make(map[trace.SpanID][]byte),
	}
	p.base, p.cancel = context.WithCancel(context.Background())
	go p.run()
	return p, nil
}

// scheduleDelay reads OTEL_BSP_SCHEDULE_DELAY (milliseconds), which the
// SDK's batch span processor honours, so that deployments keep working.
func scheduleDelay() time.Duration {
	ms := positiveEnvInt("OTEL_BSP_SCHEDULE_DELAY", int(defaultScheduleDelay/time.Millisecond))
	return time.Duration(ms) * time.Millisecond
}

// exportBatchSpans reads OTEL_BSP_MAX_EXPORT_BATCH_SIZE, the most spans of
// one export request (default 512), which the SDK's batch span processor
// honours; as there, it is at most the queue's size.
func exportBatchSpans(queue int) int {
	return min(positiveEnvInt("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", maxBatchSpans), queue)
}

// positiveEnvInt returns the positive integer in the environment variable
// name, or def when it is unset or anything else.
func positiveEnvInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func (p *exportProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues the encoding of a sampled span (as the batch span processor
// does, unsampled recording spans are not exported).
func (p *exportProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.SpanContext().IsSampled() {
		p.add(s)
	}
}

// add encodes s outside the lock and queues the bytes. Events encoded
// beforehand (endWithEvents) are copied once, into the batch.
func (p *exportProcessor) add(s sdktrace.ReadOnlySpan) {
	scratch := appendSpanHead(p.takeScratch(), s)
	head := len(scratch)
	scratch = appendSpanTail(scratch, s)
	enc := encodedSpan{head: scratch[:head], events: p.attachedEvents(s.SpanContext().SpanID()), tail: scratch[head:]}
	p.enqueue(s.Resource(), s.InstrumentationScope(), enc, scratch)
}

// encodedSpan is one Span message in three parts: the fields up to the
// SDK's events, events encoded beforehand, and the rest.
type encodedSpan struct {
	head, events, tail []byte
}

// size is the length of the ScopeSpans.spans field of the span.
func (e encodedSpan) size() int {
	return 1 + protowire.SizeBytes(len(e.head)+len(e.events)+len(e.tail))
}

// appendTo appends the span as one ScopeSpans.spans field: tag, length and
// the Span message.
func (e encodedSpan) appendTo(b []byte) []byte {
	b = appendTag(b, scopeSpansSpans, protowire.BytesType)
	b = appendVarint(b, uint64(len(e.head)+len(e.events)+len(e.tail)))
	return append(append(append(b, e.head...), e.events...), e.tail...)
}

// endWithEvents ends span, exporting events (Span.events fields written by
// appendEvent) as the span's events after those the SDK recorded (see
// eventSink). The SDK still gives the span its ids, sampling decision,
// attributes and timestamps, and calls every processor. events is not
// retained after End returns. (A direct span's events never come here:
// eventSink.finish writes them while the span is encoded.)
func (p *exportProcessor) endWithEvents(span trace.Span, events []byte, at time.Time) {
	if len(events) == 0 || !span.SpanContext().IsSampled() {
		span.End(trace.WithTimestamp(at))
		return
	}
	id := span.SpanContext().SpanID()
	p.attachMu.Lock()
	p.attached[id] = events
	p.attachMu.Unlock()
	p.numAttached.Add(1)
	defer func() {
		p.numAttached.Add(-1)
		p.attachMu.Lock()
		delete(p.attached, id)
		p.attachMu.Unlock()
	}()
	span.End(trace.WithTimestamp(at)) // the SDK calls OnEnd before End returns
}

// attachedEvents returns the encoded events that endWithEvents is
// attaching to span, if any.
func (p *exportProcessor) attachedEvents(span trace.SpanID) []byte {
	if p.numAttached.Load() == 0 {
		return nil
	}
	p.attachMu.Lock()
	defer p.attachMu.Unlock()
	return p.attached[span]
}

// takeScratch returns an empty buffer to encode one span in. (A sync.Pool
// would lose its buffers at every garbage collection and regrow them.)
func (p *exportProcessor) takeScratch() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.scratch)
	if n == 0 {
		return nil
	}
	b := p.scratch[n-1]
	p.scratch = p.scratch[:n-1]
	return b
}

// putScratchLocked keeps a span's encoding buffer for the next span.
func (p *exportProcessor) putScratchLocked(b []byte) {
	if cap(b) <= maxRetainedScratch && len(p.scratch) < spareScratch {
		p.scratch = append(p.scratch, b[:0])
	}
}

// enqueue adds one encoded span to the filling batch, sealing batches at
// their limits, or drops it when the queue is full or the processor is shut
// down. scratch, the buffer that holds the span's head and tail, is kept
// for the next span.
func (p *exportProcessor) enqueue(res *resource.Resource, scope instrumentation.Scope, enc encodedSpan, scratch []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.putScratchLocked(scratch)
	if p.stopped {
		return
	}
	size := enc.size()
	if p.queuedSpans >= p.maxQueueSpans || p.queuedBytes+size > p.maxQueueBytes {
		p.dropLocked()
		return
	}
	p.totals.queued++
	if p.cur != nil && p.cur.spans > 0 && p.cur.bytes+size > p.maxRequestBytes {
		p.sealLocked()
	}
	if p.cur == nil {
		p.cur = p.batchLocked()
	}
	p.cur.add(res, scope, enc)
	p.queuedSpans++
	p.queuedBytes += size
	if p.cur.spans >= p.maxBatchSpans {
		p.sealLocked()
	}
}

// addDirect queues direct span s, ended at end with what content appends
// (about size bytes: its events), encoding it
// straight into the filling batch under the lock: where a span made by the
// SDK is encoded into a scratch buffer outside the lock and then copied
// (enqueue), a direct span takes one lock and is written once. A span too
// large for what is left of the batch's request moves to the next batch; one
// the queue has no room for is dropped.
func (p *exportProcessor) addDirect(s *directSpan, size int, content func([]byte) []byte, end time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	if p.queuedSpans >= p.maxQueueSpans {
		p.dropLocked()
		return
	}
	if p.cur != nil && p.cur.spans > 0 && p.cur.bytes+size+directSpanFields > p.maxRequestBytes {
		p.sealLocked() // it will not fit
	}
	if p.cur == nil {
		p.cur = p.batchLocked()
	}
	g := p.cur.groupOf(s.spans.res, s.scope)
	mark := len(g.enc)
	g.enc = s.appendTo(growGroupBuffer(g.enc, size+2*directSpanFields), size, content, end)
	size = len(g.enc) - mark
	switch {
	case p.queuedBytes+size > p.maxQueueBytes:
		g.enc = g.enc[:mark]
		p.dropLocked()
		return
	case p.cur.spans > 0 && p.cur.bytes+size > p.maxRequestBytes:
		enc := slices.Clone(g.enc[mark:])
		g.enc = g.enc[:mark]
		p.sealLocked()
		p.cur = p.batchLocked()
		g = p.cur.groupOf(s.spans.res, s.scope)
		g.enc = append(growGroupBuffer(g.enc, size), enc...)
	}
	p.totals.queued++
	p.cur.added(g, size)
	p.queuedSpans++
	p.queuedBytes += size
	if p.cur.spans >= p.maxBatchSpans {
		p.sealLocked()
	}
}

// dropLocked counts a span dropped because the queue is full.
func (p *exportProcessor) dropLocked() {
	p.dropped++
	p.totals.dropped++
}

// batchLocked returns an empty batch, reusing an uploaded one if any.
func (p *exportProcessor) batchLocked() *spanBatch {
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.freeBytes -= b.capacity()
		p.freeLow = min(p.freeLow, len(p.free))
		return b
	}
	return &spanBatch{}
}

// sealLocked moves the filling batch to the upload queue and wakes the
// goroutine.
func (p *exportProcessor) sealLocked() {
	if p.cur == nil || p.cur.spans == 0 {
		return
	}
	p.sealed = append(p.sealed, p.cur)
	p.cur = nil
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run is the upload goroutine.
func (p *exportProcessor) run() {
	defer close(p.done)
	tick := time.NewTicker(p.scheduleDelay)
	defer tick.Stop()
	for {
		select {
		case <-p.wake:
			p.uploadSealed()
		case now := <-tick.C:
			p.sealAndUpload()
			if now.Sub(p.lastTrim) >= freeBatchIdle {
				p.lastTrim = now
				p.trimFree()
			}
		case ack := <-p.flush:
			p.sealAndUpload()
			close(ack)
		case <-p.stop:
			p.sealAndUpload()
			return
		}
	}
}

func (p *exportProcessor) sealAndUpload() {
	p.mu.Lock()
	p.sealLocked()
	p.mu.Unlock()
	p.uploadSealed()
}

// uploadSealed uploads the sealed batches, oldest first.
func (p *exportProcessor) uploadSealed() {
	for {
		p.mu.Lock()
		if len(p.sealed) == 0 {
			p.mu.Unlock()
			return
		}
		b := p.sealed[0]
		p.sealed[0] = nil
		p.sealed = p.sealed[1:]
		dropped := p.dropped
		p.dropped = 0
		p.mu.Unlock()

		if dropped > 0 {
			otel.Handle(fmt.Errorf("traces export: %d spans dropped: the export queue (%d spans, %d bytes) was full",
				dropped, p.maxQueueSpans, p.maxQueueBytes))
		}
		err := p.upload(b)
		if err != nil {
			otel.Handle(fmt.Errorf("traces export: %w (%d spans not sent)", err, b.spans))
		}
		p.recycle(b, err)
	}
}

// upload sends one batch as one request.
func (p *exportProcessor) upload(b *spanBatch) error {
	ctx, cancel := context.WithTimeout(p.base, p.exportTimeout)
	defer cancel()
	return p.client.UploadTraces(ctx, b.request())
}

// recycle counts a sent (or failed: err) batch's spans, releases its share
// of the queue and keeps its buffers for reuse unless they are huge.
func (p *exportProcessor) recycle(b *spanBatch, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.totals.count(b.spans, err)
	p.queuedSpans -= b.spans
	p.queuedBytes -= b.bytes
	b.reset()
	if p.lent.held() {
		b.forgetBuffers() // gRPC still reads them
	}
	if n := b.capacity(); p.freeBytes+n <= p.maxFreeBytes {
		p.free = append(p.free, b)
		p.freeBytes += n
	}
}

// trimFree releases the free batches that no batch was taken from since
// the last trim: the least recently used, at the bottom of the stack.
func (p *exportProcessor) trimFree() {
	p.mu.Lock()
	defer p.mu.Unlock()
	unused := min(p.freeLow, len(p.free))
	for _, b := range p.free[:unused] {
		p.freeBytes -= b.capacity()
	}
	p.free = slices.Delete(p.free, 0, unused)
	p.freeLow = len(p.free)
}

// exportTotals are the processor's span counts since startup, exposed on
// /metrics under the OpenTelemetry SDK's own metric names
// (metrics.observeExport). Spans that end after Shutdown are not counted.
type exportTotals struct {
	queued, dropped int64            // taken into the queue; dropped because it was full
	sent            int64            // uploaded
	failed          map[string]int64 // not uploaded, by exportErrorType
}

// count adds an uploaded batch of n spans, or a failed one.
func (t *exportTotals) count(n int, err error) {
	if err == nil {
		t.sent += int64(n)
		return
	}
	if t.failed == nil {
		t.failed = make(map[string]int64)
	}
	t.failed[exportErrorType(err)] += int64(n)
}

// exportErrorType is the error.type of a failed upload: the gRPC status
// code's name where the error carries one (Unavailable, DeadlineExceeded,
// ResourceExhausted, ...), else timeout or canceled when the upload's
// context ended, else _OTHER. (The errors' Go types, which the semantic
// conventions suggest, are the OTLP clients' wrappers here: they would not
// tell one failure from another.)
func exportErrorType(err error) string {
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK && st.Code() != codes.Unknown {
		return st.Code().String()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return semconv.ErrorTypeOther.Value.AsString()
}

// exportState is what the SDK's own metrics read: the totals and the
// queue's size and capacity in spans.
type exportState struct {
	exportTotals
	queueSpans, queueCapacity int64
}

// state returns a copy of the totals and the queue's current size.
func (p *exportProcessor) state() exportState {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := exportState{exportTotals: p.totals, queueSpans: int64(p.queuedSpans), queueCapacity: int64(p.maxQueueSpans)}
	s.failed = maps.Clone(p.totals.failed)
	return s
}

// ForceFlush sends every span ended before the call.
func (p *exportProcessor) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case p.flush <- ack:
	case <-p.done:
		return nil // shut down: everything was sent or dropped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown sends what is queued, stops the goroutine and then the client.
// Spans that end later are dropped. If ctx ends first, uploads in flight
// are cancelled and the rest is dropped.
func (p *exportProcessor) Shutdown(ctx context.Context) error {
	var err error
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.sealLocked()
		p.stopped = true
		p.mu.Unlock()
		close(p.stop)
		select {
		case <-p.done:
		case <-ctx.Done():
			p.cancel()
			<-p.done
			err = ctx.Err()
		}
		p.cancel()
		err = errors.Join(err, p.client.Stop(ctx))
	})
	return err
}

// spanBatch is the framed encodings of the spans of one request, grouped by
// resource and scope in order of first appearance, as the stock exporter
// groups them.
//
// A batch is reused once uploaded, and each group keeps its resource, scope
// and buffer across uses: the next batch's spans of that scope are appended
// where the last batch's were, so that after the first batches no buffer
// grows again. (Handing the buffers out by position instead gave a scope
// the buffer of whichever scope came first: step windows, the largest
// spans, then regrew theirs from small in most batches, which was the
// largest allocation of step tracing.)
type spanBatch struct {
	groups []spanGroup // in order of first use; those of earlier uses may be empty
	spans  int
	bytes  int
}

// spanGroup is one ScopeSpans: the spans of one resource and scope.
type spanGroup struct {
	// What adding a direct span reads and writes (groupOf, added) first.
	scopeRef *instrumentation.Scope // the direct spans' scope of this group (groupOf), if any
	res      *resource.Resource
	enc      []byte // its ScopeSpans.spans fields
	spans    int    // in enc
	first    int    // the batch's span count when this use's first span came
	scope    instrumentation.Scope
}

// maxBatchGroups bounds the groups a batch keeps between uses: a process
// has one resource and a few scopes. Once a batch has this many, a new
// scope takes over an empty group's buffer where there is one.
const maxBatchGroups = 8

// add appends one span to the group of res and scope (a process has one
// resource and a few scopes: a linear search suffices).
func (b *spanBatch) add(res *resource.Resource, scope instrumentation.Scope, enc encodedSpan) {
	g := b.group(res, scope)
	n := len(g.enc)
	g.enc = growGroupBuffer(g.enc, enc.size())
	g.enc = enc.appendTo(g.enc)
	b.added(g, len(g.enc)-n)
}

// added counts a span of size bytes appended to g.
func (b *spanBatch) added(g *spanGroup, size int) {
	if g.spans == 0 {
		g.first = b.spans
	}
	g.spans++
	b.spans++
	b.bytes += size
}

// minGroupBuffer is the least capacity a group's buffer grows to.
const minGroupBuffer = 64 << 10

// growGroupBuffer makes room for n more bytes, doubling the capacity (up
// to a request's worth) where append would grow it by a quarter: a batch's
// buffers grow, on fresh pages and copying what they hold, until they reach
// their working size, and a server's first batches paid for about thirty
// such steps per scope.
func growGroupBuffer(b []byte, n int) []byte {
	need := len(b) + n
	if need <= cap(b) {
		return b
	}
	target := max(need, cap(b)+min(cap(b), defaultMaxRequestBytes), minGroupBuffer)
	return slices.Grow(b, target-len(b))
}

// groupOf is group for direct spans, whose scope is their starter's: it
// finds the group by the scope's address, without comparing scopes.
func (b *spanBatch) groupOf(res *resource.Resource, scope *instrumentation.Scope) *spanGroup {
	for i := range b.groups {
		if g := &b.groups[i]; g.scopeRef == scope && g.res == res {
			return g
		}
	}
	g := b.group(res, *scope)
	g.scopeRef = scope
	return g
}

func (b *spanBatch) group(res *resource.Resource, scope instrumentation.Scope) *spanGroup {
	for i := range b.groups {
		if g := &b.groups[i]; g.scope == scope && sameResource(g.res, res) {
			return g
		}
	}
	if len(b.groups) >= maxBatchGroups {
		for i := range b.groups {
			if g := &b.groups[i]; g.spans == 0 {
				g.res, g.scope, g.scopeRef = res, scope, nil
				return g
			}
		}
	}
	b.groups = append(b.groups, spanGroup{res: res, scope: scope})
	return &b.groups[len(b.groups)-1]
}

// reset empties the batch. Up to maxBatchGroups groups keep their scope and
// their buffer, unless it holds more than maxRetainedExportBuffer bytes.
func (b *spanBatch) reset() {
	if len(b.groups) > maxBatchGroups {
		clear(b.groups[maxBatchGroups:])
		b.groups = b.groups[:maxBatchGroups]
	}
	for i := range b.groups {
		g := &b.groups[i]
		g.enc, g.spans = g.enc[:0], 0
		if cap(g.enc) > maxRetainedExportBuffer {
			g.enc = nil
		}
	}
	b.spans, b.bytes = 0, 0
}

// forgetBuffers drops the batch's buffers, keeping its groups.
func (b *spanBatch) forgetBuffers() {
	for i := range b.groups {
		b.groups[i].enc = nil
	}
}

// capacity is the bytes the batch's buffers hold.
func (b *spanBatch) capacity() int {
	n := 0
	for _, g := range b.groups {
		n += cap(g.enc)
	}
	return n
}

// request returns the batch as the request's resource spans. Each
// ScopeSpans is a message shell whose spans field is carried, already
// encoded, as its unknown fields, which proto.Marshal writes out unchanged;
// the messages refer to the batch's buffers, so they are valid until it is
// reset.
func (b *spanBatch) request() []*tracepb.ResourceSpans {
	used := make([]*spanGroup, 0, len(b.groups))
	for i := range b.groups {
		if b.groups[i].spans > 0 {
			used = append(used, &b.groups[i])
		}
	}
	slices.SortFunc(used, func(x, y *spanGroup) int { return x.first - y.first })
	var out []*tracepb.ResourceSpans
	var outRes []*resource.Resource // the resource of each entry of out
	for _, g := range used {
		k := slices.IndexFunc(outRes, func(r *resource.Resource) bool { return sameResource(r, g.res) })
		if k < 0 {
			rs := &tracepb.ResourceSpans{Resource: resourceShell(g.res)}
			if g.res != nil {
				rs.SchemaUrl = g.res.SchemaURL()
			}
			k, out, outRes = len(out), append(out, rs), append(outRes, g.res)
		}
		ss := &tracepb.ScopeSpans{Scope: scopeShell(g.scope), SchemaUrl: g.scope.SchemaURL}
		ss.ProtoReflect().SetUnknown(protoreflect.RawFields(g.enc))
		out[k].ScopeSpans = append(out[k].ScopeSpans, ss)
	}
	return out
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
