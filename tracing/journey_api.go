package tracing

import (
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/server"
)

// errNoOutcome is recorded when a request span ends without Departed or
// Aborted: the handler returned early or panicked.
var errNoOutcome = errors.New("request ended without an outcome")

// httpTelemetry implements server.Telemetry.
type httpTelemetry struct{ t *Telemetry }

// Arrived is api.ARRIVED: it makes the one journey-sampling decision of the
// request and starts llm_request (scope vllm.api) when the request is traced.
func (h httpTelemetry) Arrived(r *http.Request, route string) server.RequestSpan {
	t := h.t
	if t.apiSpans == nil || t.closed.Load() {
		return &metricsOnlySpan{m: t.metrics}
	}
	journey := t.journey
	if journey && !t.journeySampler.SampleRequest() {
		return &metricsOnlySpan{m: t.metrics}
	}
	now := t.now()
	parent := remoteParent(w3cHeaders(r.Header))
	s := &apiSpan{t: t, journey: journey, route: route}
	s.span = t.apiSpans.startIn(&s.direct, parent, now)
	s.headers = traceHeaders(s.span.SpanContext(), journey)
	s.events = newEventSink(t.export, s.span)
	if journey {
		s.event(EventArrived, now)
	}
	t.openAPI(s)
	return s
}

// w3cHeaders reads traceparent and tracestate from HTTP headers under their
// canonical keys directly: propagation.HeaderCarrier canonicalises each key
// on every lookup, allocating. Only remoteParent uses it.
type w3cHeaders http.Header

func (h w3cHeaders) Get(key string) string {
	var canonical string
	switch key {
	case traceparentHeader:
		canonical = "Traceparent"
	case tracestateHeader:
		canonical = "Tracestate"
	default:
		return http.Header(h).Get(key)
	}
	if v := h[canonical]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (h w3cHeaders) Set(key, value string) { http.Header(h).Set(key, value) }
func (h w3cHeaders) Keys() []string        { return propagation.HeaderCarrier(h).Keys() }

// traceHeaders returns the headers the engine request carries: the W3C
// context of llm_request (traceparent and, when it has one, tracestate)
// and, for journey-sampled requests, the flag that makes the engine create
// llm_core. The W3C headers are those propagation.TraceContext.Inject
// writes (a test requires equal headers for random span contexts), written
// here because Inject takes a context holding the span, which cost an
// allocation, and looks the span up in it again: in a server's profile
// that was about 0.8 µs per request. The engine reads them back with
// remoteParent.
func traceHeaders(sc trace.SpanContext, journey bool) map[string]string {
	h := make(map[string]string, 3)
	if sc.IsValid() {
		if ts := sc.TraceState(); ts.Len() > 0 {
			h[tracestateHeader] = ts.String()
		}
		h[traceparentHeader] = traceparent(sc)
	}
	if journey {
		h[JourneySampledHeader] = "1"
	}
	return h
}

// The W3C trace context headers (lower case, as Inject writes them).
const (
	traceparentHeader = "traceparent"
	tracestateHeader  = "tracestate"
)

// traceparent formats sc as a version 00 traceparent header, keeping only
// the flags the specification defines (sampled, random), as Inject does.
func traceparent(sc trace.SpanContext) string {
	var b [55]byte // 00-<32 hex>-<16 hex>-<2 hex>
	tid, sid := sc.TraceID(), sc.SpanID()
	flags := [1]byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))}
	copy(b[:], "00-")
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], flags[:])
	return string(b[:])
}

// remoteParent returns the span context in the traceparent and tracestate
// headers carrier holds (a client's HTTP headers, or an engine request's),
// as propagation.TraceContext.Extract reads it (a fuzz test requires the
// same context from both, for any headers): version 00 with exactly four
// fields and no reserved flag bits, or a later version with at least four,
// all fields of lower-case hex, only the sampled and random flags kept, a
// tracestate that does not parse ignored. Extract wraps the context in a
// context.Context, an allocation; in a server's profile that was about
// half of starting llm_core.
func remoteParent(carrier propagation.TextMapCarrier) trace.SpanContext {
	h := carrier.Get(traceparentHeader)
	var version, flags [1]byte
	var c trace.SpanContextConfig
	if len(h) == traceparentLen && h[2] == '-' && h[35] == '-' && h[52] == '-' {
		// The layout traceHeaders writes: a '-' inside a field is not hex.
		if !decodeHex(version[:], h[:2]) || !decodeHex(c.TraceID[:], h[3:35]) ||
			!decodeHex(c.SpanID[:], h[36:52]) || !decodeHex(flags[:], h[53:]) {
			return trace.SpanContext{}
		}
		h = ""
	} else if !cutHexField(&h, version[:]) || !cutHexField(&h, c.TraceID[:]) ||
		!cutHexField(&h, c.SpanID[:]) || !cutHexField(&h, flags[:]) {
		return trace.SpanContext{}
	}
	if version[0] == 0xff || version[0] == 0 && (h != "" || flags[0] > byte(trace.FlagsSampled|trace.FlagsRandom)) {
		return trace.SpanContext{}
	}
	c.TraceFlags = trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom)
	c.TraceState, _ = trace.ParseTraceState(carrier.Get(tracestateHeader)) // a bad tracestate does not void the parent
	c.Remote = true
	if sc := trace.NewSpanContext(c); sc.IsValid() {
		return sc
	}
	return trace.SpanContext{}
}

// traceparentLen is the length of a version 00 traceparent.
const traceparentLen = len("00-") + 32 + len("-") + 16 + len("-") + 2

// cutHexField decodes the field that starts *h, up to the next '-' or the
// end, into dst, and leaves the rest after the '-' in *h.
func cutHexField(h *string, dst []byte) bool {
	field, rest, _ := strings.Cut(*h, "-")
	*h = rest
	return decodeHex(dst, field)
}

// decodeHex decodes src, lower-case hex of exactly twice dst's length (the
// W3C format has no upper-case digits), into dst, and reports whether it
// was. It looks every digit up in a table and checks them all at once at
// the end: with a branch per digit, random ids mispredicted about every
// other digit.
func decodeHex(dst []byte, src string) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	var invalid byte
	for i := range dst {
		hi, lo := hexDigits[src[2*i]], hexDigits[src[2*i+1]]
		dst[i] = hi<<4 | lo
		invalid |= hi | lo
	}
	return invalid <= 0xf
}

// hexDigits maps 0-9 and a-f to their values and every other byte to 0xff.
var hexDigits = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	return t
}()

// apiSpan is the llm_request span of one traced API request. The handler
// goroutine drives it; Shutdown may end it concurrently, hence the mutex.
// Its attributes are kept as values and set on the span in one call when it
// ends (the SDK grows the span's attribute array on every call), encoded
// with its events when they are (eventSink).
type apiSpan struct {
	t         *Telemetry
	slot      int // in Telemetry.apiOpen (registrySlot)
	span      trace.Span
	direct    directSpan // span's memory when it is made directly
	journey   bool       // events on; false: plain request span (endpoint only)
	events    eventSink
	headers   map[string]string
	route     string
	held      []apiEvent // see event
	heldArray [maxAPIEvents]apiEvent

	mu        sync.Mutex
	info      server.RequestInfo // set by Parsed; its pointers point at the copies below
	temp      float64
	topP      float64
	maxTokens int
	n         int
	parsed    bool
	outcome   server.Outcome // set by Departed
	departed  bool
	handedOff bool
	firstResp bool
	terminal  bool
	ended     bool
}

// apiEvent is an api.* event held until its span ends: its name, time
// and, for api.ABORTED, reason and error.
type apiEvent struct {
	name        string
	at          time.Time
	reason, msg string
}

// maxAPIEvents is the most api.* events a span has: ARRIVED,
// HANDOFF_TO_CORE, FIRST_RESPONSE_FROM_CORE, and DEPARTED or ABORTED.
const maxAPIEvents = 4

// event holds an api.* event; callers hold mu (or own s before it is
// published). The events are written when the span ends (endLocked):
// written one at a time, each found the caches emptied by the serving
// code that ran since the last, and fetched its code, keys and buffer
// from memory again (docs/tracing-overhead.md). The exported span is the
// same: each event carries its own time.
func (s *apiSpan) registrySlot() *int { return &s.slot }

func (s *apiSpan) event(name string, at time.Time) {
	s.hold(apiEvent{name: name, at: at})
}

func (s *apiSpan) hold(e apiEvent) {
	if s.held == nil {
		s.held = s.heldArray[:0]
	}
	s.held = append(s.held, e)
}

// writeContent writes the held events, in order, and the attributes
// (spanContent).
func (s *apiSpan) writeContent(e *eventSink, b *eventBuilder, span trace.Span) {
	for i := range s.held {
		ev := &s.held[i]
		e.addFrom(b, span, ev.name, ev.at, ev)
	}
	clear(s.held)
	s.held = nil
	e.setAttributes(b, span, s)
}

// apiEventKeys are the attribute keys of the api.* events.
var apiEventKeys = struct{ tsMonotonic, reason, err *eventKey }{
	tsMonotonic: newEventKey(AttrEventTSMonotonic), reason: newEventKey(AttrReason), err: newEventKey(AttrError),
}

func (e *apiEvent) writeAttributes(w *eventAttrs) {
	k := &apiEventKeys
	w.float(k.tsMonotonic, monotonicSeconds(e.at))
	if e.name == EventAborted {
		w.str(k.reason, e.reason)
		w.str(k.err, e.msg)
	}
}

// Parsed records the gen_ai request attributes; unset values are skipped.
func (s *apiSpan) Parsed(info server.RequestInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n = info.NumChoices() // for request_params_n, also when ended
	if s.ended {
		return
	}
	s.info, s.parsed = info, true
	if info.Temperature != nil {
		s.temp = *info.Temperature
		s.info.Temperature = &s.temp
	}
	if info.TopP != nil {
		s.topP = *info.TopP
		s.info.TopP = &s.topP
	}
	if info.MaxTokens != nil {
		s.maxTokens = *info.MaxTokens
		s.info.MaxTokens = &s.maxTokens
	}
	if info.N != nil {
		s.info.N = &s.n
	}
}

// endLocked ends the span with its events and its attributes, from
// Arrived, Parsed and Departed, set in one call.
func (s *apiSpan) endLocked(at time.Time) {
	s.events.finish(nil, s.span, s, journeySpanContent, at)
}

// spanKeys are the attribute keys of llm_request.
var spanKeys = struct {
	route, requestID, model, promptTokens, temperature, topP, maxTokens, n *eventKey
	completionTokens                                                       *eventKey
	queue, ttft, e2e, prefill, decode, inference                           *eventKey // gen_ai.latency.*
}{
	route: newSpanKey(AttrHTTPRoute), requestID: newSpanKey(AttrRequestID), model: newSpanKey(AttrResponseModel),
	promptTokens: newSpanKey(AttrPromptTokens), temperature: newSpanKey(AttrTemperature), topP: newSpanKey(AttrTopP),
	maxTokens: newSpanKey(AttrMaxTokens), n: newSpanKey(AttrN), completionTokens: newSpanKey(AttrCompletionTokens),
	queue: newSpanKey(AttrTimeInQueue), ttft: newSpanKey(AttrTTFT), e2e: newSpanKey(AttrE2E),
	prefill: newSpanKey(AttrTimeInPrefill), decode: newSpanKey(AttrTimeInDecode), inference: newSpanKey(AttrTimeInInference),
}

// writeAttributes writes llm_request's attributes (at most 15; the span's
// owner holds mu).
func (s *apiSpan) writeAttributes(w *eventAttrs) {
	k := &spanKeys
	w.str(k.route, s.route)
	if s.parsed {
		writeRequestAttributes(w, s.info)
	}
	if s.departed {
		w.int(k.completionTokens, int64(s.outcome.CompletionTokens))
		writeLatencyAttributes(w, s.outcome.Times)
	}
}

// writeRequestAttributes writes the gen_ai request attributes (at most 7).
func writeRequestAttributes(w *eventAttrs, info server.RequestInfo) {
	k := &spanKeys
	if info.RequestID != "" {
		w.str(k.requestID, info.RequestID)
	}
	if info.Model != "" {
		w.str(k.model, info.Model)
	}
	w.int(k.promptTokens, int64(info.PromptTokens))
	if info.Temperature != nil {
		w.float(k.temperature, *info.Temperature)
	}
	if info.TopP != nil {
		w.float(k.topP, *info.TopP)
	}
	if info.MaxTokens != nil {
		w.int(k.maxTokens, int64(*info.MaxTokens))
	}
	if info.N != nil {
		w.int(k.n, int64(*info.N))
	}
}

// TraceHeaders returns the engine-request headers, shared by the request's
// sub-requests; nobody writes to them after Arrived.
func (s *apiSpan) TraceHeaders() map[string]string { return s.headers }

// HandoffToCore is api.HANDOFF_TO_CORE (once), at the time the handoff
// began (zero: now).
func (s *apiSpan) HandoffToCore(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.terminal || s.handedOff {
		return
	}
	s.handedOff = true
	if at.IsZero() {
		at = s.t.now()
	}
	if s.journey {
		s.event(EventHandoff, at)
	}
}

// FirstResponseFromCore is api.FIRST_RESPONSE_FROM_CORE (once), placed at
// the engine's first-token time whatever the response mode.
func (s *apiSpan) FirstResponseFromCore(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.terminal || s.firstResp {
		return
	}
	s.firstResp = true
	if at.IsZero() {
		at = s.t.now()
	}
	if s.journey {
		s.event(EventFirstResponse, at)
	}
}

// Departed is api.DEPARTED: completion tokens and the latency set.
func (s *apiSpan) Departed(o server.Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.terminal {
		return
	}
	s.terminal = true
	if s.journey {
		s.event(EventDeparted, s.t.now())
	}
	s.outcome, s.departed = o, true
}

// writeLatencyAttributes writes upstream vLLM's gen_ai.latency set in
// seconds, each only when the timestamps it spans exist.
func writeLatencyAttributes(w *eventAttrs, t engine.RequestTimes) {
	k := &spanKeys
	arrived, sched, first, last := !t.Arrival.IsZero(), !t.Scheduled.IsZero(), !t.FirstToken.IsZero(), !t.LastToken.IsZero()
	for _, l := range [...]struct {
		key *eventKey
		ok  bool
		d   time.Duration
	}{
		{k.queue, arrived && sched, t.QueueTime()},
		{k.ttft, arrived && first, t.TTFT()},
		{k.e2e, arrived && !t.Finished.IsZero(), t.E2E()},
		{k.prefill, sched && first, t.Prefill()},
		{k.decode, first && last, t.Decode()},
		{k.inference, sched && last, t.Inference()},
	} {
		if l.ok {
			w.float(l.key, l.d.Seconds())
		}
	}
}

// Aborted is api.ABORTED with reason and error; the span status is ERROR.
func (s *apiSpan) Aborted(reason string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abortLocked(reason, err, s.t.now())
}

func (s *apiSpan) abortLocked(reason string, err error, at time.Time) {
	if s.ended || s.terminal {
		return
	}
	s.terminal = true
	msg := reason
	if err != nil {
		msg = err.Error()
	}
	if s.journey {
		s.hold(apiEvent{name: EventAborted, at: at, reason: reason, msg: msg})
	}
	s.span.SetStatus(codes.Error, msg)
}

// End finalises the span exactly once: without an outcome it records an
// abort with reason "exception".
func (s *apiSpan) End() {
	if s.endWith(server.ReasonException, errNoOutcome) {
		s.t.closeAPI(s)
		s.t.metrics.requestParamsN(s.n)
	}
}

// endWith ends the span, recording an abort with reason if no terminal call
// came first; it reports whether this call ended it.
func (s *apiSpan) endWith(reason string, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	now := s.t.now()
	s.abortLocked(reason, err, now)
	s.ended = true
	s.endLocked(now)
	return true
}

// metricsOnlySpan serves untraced requests: it records request metrics and
// nothing else, and holds no shared state.
type metricsOnlySpan struct {
	m     *metrics
	n     int
	ended bool
}

func (s *metricsOnlySpan) Parsed(info server.RequestInfo)  { s.n = info.NumChoices() }
func (s *metricsOnlySpan) TraceHeaders() map[string]string { return nil }
func (s *metricsOnlySpan) HandoffToCore(time.Time)         {}
func (s *metricsOnlySpan) FirstResponseFromCore(time.Time) {}
func (s *metricsOnlySpan) Departed(server.Outcome)         {}
func (s *metricsOnlySpan) Aborted(string, error)           {}
func (s *metricsOnlySpan) End() {
	if !s.ended {
		s.ended = true
		s.m.requestParamsN(s.n)
	}
}
