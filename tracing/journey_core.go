package tracing

import (
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/vserve/vserve/scheduler"
)

// coreTracer owns the llm_core spans (scope vllm.scheduler). State exists
// only for requests whose trace headers carry x-vllm-journey-sampled "1":
// start returns it, the engine hands it to the scheduler as the request's
// observer state, and the hooks get it back from the request's view (or
// RequestEnd), with no lookup by id. One idempotent cleanup (finish, or
// Shutdown's end) releases it on every path.
type coreTracer struct {
	spans  *spanStarter
	export *exportProcessor // see eventSink
	now    func() time.Time // time.Now; tests make it deterministic
	open   registry[*coreState]
}

// coreState is one sampled request's journey. The engine goroutine drives
// it; shutdown may end it concurrently, hence the mutex around its events,
// its status and its end.
type coreState struct {
	span        trace.Span
	direct      directSpan            // span's memory when it is made directly
	attrs       [1]attribute.KeyValue // span's attributes at its start
	now         func() time.Time
	mu          sync.Mutex
	events      eventSink
	ended       bool
	tracer      *coreTracer
	slot        int // in tracer.open
	promptLen   int
	maxTokens   int
	highWater   int
	preemptions int
	scheduled   bool
	firstToken  bool
	finished    bool
	held        []journeyEvent // written when the span ends (see apiSpan.event)
	heldArray   [4]journeyEvent
}

func (st *coreState) registrySlot() *int { return &st.slot }

// journeyEvent is the content of one journey.<typ> event: the common keys
// and at most one extra attribute (schedule.kind or finish.status).
type journeyEvent struct {
	typ                     string
	at                      time.Time // the event's timestamp
	step                    uint64
	phase                   string
	prefillDone, prefillAll int
	decodeDone, decodeMax   int
	preemptions             int
	extraKey                *eventKey // nil: no extra attribute
	extra                   string
}

// journeyEventKeys are the attribute keys of the journey events.
var journeyEventKeys = struct {
	eventType, tsMonotonic, tsMonotonicNS, step, phase      *eventKey
	prefillDone, prefillAll, decodeDone, decodeMax, preempt *eventKey
	scheduleKind, finishStatus                              *eventKey
}{
	eventType: newEventKey(AttrEventType), tsMonotonic: newEventKey(AttrTSMonotonic),
	tsMonotonicNS: newEventKey(AttrTSMonotonicNS), step: newEventKey(AttrSchedulerStep), phase: newEventKey(AttrPhase),
	prefillDone: newEventKey(AttrPrefillDoneTokens), prefillAll: newEventKey(AttrPrefillTotalTokens),
	decodeDone: newEventKey(AttrDecodeDoneTokens), decodeMax: newEventKey(AttrDecodeMaxTokens),
	preempt:      newEventKey(AttrNumPreemptions),
	scheduleKind: newEventKey(AttrScheduleKind), finishStatus: newEventKey(AttrFinishStatus),
}

func (e *journeyEvent) writeAttributes(w *eventAttrs) {
	k := &journeyEventKeys
	w.str(k.eventType, e.typ)
	ns := monotonicNS(e.at)
	w.float(k.tsMonotonic, float64(ns)/1e9)
	w.int(k.tsMonotonicNS, ns)
	w.int(k.step, int64(e.step))
	w.str(k.phase, e.phase)
	w.int(k.prefillDone, int64(e.prefillDone))
	w.int(k.prefillAll, int64(e.prefillAll))
	w.int(k.decodeDone, int64(e.decodeDone))
	w.int(k.decodeMax, int64(e.decodeMax))
	w.int(k.preempt, int64(e.preemptions))
	if e.extraKey != nil {
		w.str(e.extraKey, e.extra)
	}
}

func newCoreTracer(spans *spanStarter, export *exportProcessor) *coreTracer {
	return &coreTracer{spans: spans, export: export, now: time.Now}
}

// start creates llm_core iff headers[x-vllm-journey-sampled] is exactly "1",
// as a child of the traceparent in headers, and returns its state (nil
// when there is none).
func (c *coreTracer) start(id string, headers map[string]string, promptLen, maxTokens int, at time.Time) *coreState {
	if headers[JourneySampledHeader] != "1" {
		return nil
	}
	if at.IsZero() {
		at = c.now()
	}
	parent := remoteParent(propagation.MapCarrier(headers))
	st := &coreState{now: c.now, tracer: c, promptLen: promptLen, maxTokens: maxTokens}
	st.attrs[0] = attribute.String(AttrRequestID, id)
	st.span = c.spans.startIn(&st.direct, parent, at, st.attrs[:]...)
	st.events = newEventSink(c.export, st.span)
	c.open.add(st)
	return st
}

// journeyOf returns the journey state a request carries (its observer
// state, from start), or nil.
func journeyOf(state any) *coreState {
	st, _ := state.(*coreState)
	return st
}

// observe updates the high-water mark and emits journey.<typ>.
func (c *coreTracer) observe(r scheduler.RequestView, typ string, step uint64) {
	st := journeyOf(r.ObserverState())
	if st == nil {
		return
	}
	st.update(r)
	st.emit(typ, step, st.phase(r), r.NumOutputTokens(), nil, "")
}

func (st *coreState) update(r scheduler.RequestView) {
	if n := r.NumPromptTokens(); n > 0 {
		st.promptLen = n
	}
	if m := r.MaxTokens(); m > 0 {
		st.maxTokens = m
	}
	hw := max(r.PrefillHighWater(), st.highWater)
	st.highWater = min(hw, st.promptLen)
}

// phase is WAITING until the request was first scheduled.
func (st *coreState) phase(r scheduler.RequestView) string {
	if !st.scheduled {
		return string(scheduler.PhaseWaiting)
	}
	if p := r.Phase(); p != scheduler.PhaseWaiting {
		return string(p)
	}
	if r.NumOutputTokens() > 0 {
		return string(scheduler.PhaseDecode)
	}
	return string(scheduler.PhasePrefill)
}

// emit adds journey.<typ> with the common keys and, when extraKey is set,
// one extra attribute (schedule.kind or finish.status).
func (st *coreState) emit(typ string, step uint64, phase string, outputTokens int, extraKey *eventKey, extra string) (at time.Time) {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return now
	}
	if st.held == nil {
		st.held = st.heldArray[:0]
	}
	st.held = append(st.held, journeyEvent{
		typ: typ, at: now, step: step, phase: phase,
		prefillDone: st.highWater, prefillAll: st.promptLen, decodeDone: outputTokens, decodeMax: st.maxTokens,
		preemptions: st.preemptions, extraKey: extraKey, extra: extra,
	})
	return now
}

// endAt ends the span once, with its events, at time at, with status
// Error and description errDesc unless that is empty, and releases the
// state's slot.
func (st *coreState) endAt(at time.Time, errDesc string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return
	}
	st.ended = true
	if errDesc != "" {
		st.span.SetStatus(codes.Error, errDesc)
	}
	st.events.finish(nil, st.span, st, journeySpanContent, at)
	clear(st.held)
	st.held = nil
	st.tracer.open.remove(st)
}

// writeContent writes the held events, in order (spanContent).
func (st *coreState) writeContent(e *eventSink, b *eventBuilder, span trace.Span) {
	for i := range st.held {
		ev := &st.held[i]
		e.addFrom(b, span, journeyEventName(ev.typ), ev.at, ev)
	}
}

// journeyEventName is "journey." + typ without building the string each time.
func journeyEventName(typ string) string {
	switch typ {
	case JourneyQueued:
		return "journey." + JourneyQueued
	case JourneyScheduled:
		return "journey." + JourneyScheduled
	case JourneyFirstToken:
		return "journey." + JourneyFirstToken
	case JourneyPreempted:
		return "journey." + JourneyPreempted
	case JourneyFinished:
		return "journey." + JourneyFinished
	}
	return "journey." + typ
}

// Queued, Scheduled, FirstToken, Preempted and Finished implement the
// journey part of scheduler.Observer.

func (c *coreTracer) queued(r scheduler.RequestView, step uint64) {
	c.observe(r, JourneyQueued, step)
}

func (c *coreTracer) scheduled(r scheduler.RequestView, step uint64, resumed bool) {
	st := journeyOf(r.ObserverState())
	if st == nil {
		return
	}
	kind := ScheduleKindFirst
	if resumed || st.scheduled {
		kind = ScheduleKindResume
	}
	st.scheduled = true
	st.update(r)
	st.emit(JourneyScheduled, step, st.phase(r), r.NumOutputTokens(), journeyEventKeys.scheduleKind, kind)
}

func (c *coreTracer) firstToken(r scheduler.RequestView, step uint64) {
	st := journeyOf(r.ObserverState())
	if st == nil || st.firstToken {
		return
	}
	st.firstToken = true
	st.update(r)
	st.emit(JourneyFirstToken, step, string(scheduler.PhaseDecode), max(1, r.NumOutputTokens()), nil, "")
}

func (c *coreTracer) preempted(r scheduler.RequestView, step uint64) {
	st := journeyOf(r.ObserverState())
	if st == nil {
		return
	}
	st.preemptions++
	st.update(r)
	st.emit(JourneyPreempted, step, st.phase(r), r.NumOutputTokens(), nil, "")
}

func (c *coreTracer) finishedView(r scheduler.RequestView, step uint64, reason scheduler.FinishReason) {
	st := journeyOf(r.ObserverState())
	if st == nil || st.finished {
		return
	}
	st.update(r)
	st.finish(step, reason, st.phase(r), r.NumOutputTokens())
}

// finish is the one idempotent cleanup of a journey on the engine's
// goroutine (Finished, then RequestEnd): it emits journey.FINISHED unless
// it was emitted and ends the span (unless Shutdown did).
func (st *coreState) finish(step uint64, reason scheduler.FinishReason, phase string, outputTokens int) {
	if st.finished {
		return
	}
	st.finished = true
	status := finishStatus(reason)
	at := st.emit(JourneyFinished, step, phase, outputTokens, journeyEventKeys.finishStatus, status)
	errDesc := ""
	if reason == scheduler.FinishError {
		errDesc = "generation error"
	}
	st.endAt(at, errDesc) // the span ends with its last event
}

// finishFromEnd finishes from the engine's RequestEnd: the path for requests
// that ended without a scheduler Finished event (rejected, shut down).
func (c *coreTracer) finishFromEnd(state any, step uint64, reason scheduler.FinishReason, outputTokens int) {
	st := journeyOf(state)
	if st == nil || st.finished {
		return
	}
	phase := string(scheduler.PhaseWaiting)
	switch {
	case st.scheduled && outputTokens > 0:
		phase = string(scheduler.PhaseDecode)
	case st.scheduled:
		phase = string(scheduler.PhasePrefill)
	}
	st.finish(step, reason, phase, outputTokens)
}

// finishStatus maps a FinishReason onto the journey's finish.status.
func finishStatus(r scheduler.FinishReason) string {
	switch r {
	case scheduler.FinishStop:
		return FinishStatusStopped
	case scheduler.FinishLength:
		return FinishStatusLength
	case scheduler.FinishAbort:
		return FinishStatusAborted
	case scheduler.FinishError:
		return FinishStatusError
	case scheduler.FinishNone:
		return finishStatusUnspecified
	}
	return string(r)
}

// live is the number of requests with journey state.
func (c *coreTracer) live() int { return c.open.live() }

// shutdown ends every open llm_core span (status ERROR "shutdown").
func (c *coreTracer) shutdown() {
	for _, st := range c.open.takeAll() {
		st.endAt(st.now(), "shutdown")
	}
}
