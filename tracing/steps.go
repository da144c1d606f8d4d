package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/vserve/vserve/scheduler"
)

// stepTracer implements step tracing: two-stage sampled step.BATCH_SUMMARY
// and step.REQUEST_SNAPSHOT events on scheduler_steps_<k> window spans.
//
// The events of a sampled step are built at the end of Schedule (their
// timestamps are taken there) and held until the engine reports the step's
// timing, so the summary also carries device.forward_us, device.sample_us
// and runner.prepare_us: scheduler time and device time of the same step
// side by side in one event. At most maxPendingSteps steps wait (an engine
// may schedule step N+1 before step N's timing arrives); a step whose timing
// never comes (it scheduled nothing) is emitted without it once a later
// step's timing arrives, when too many wait, or at shutdown. Events are
// always emitted in step order.
//
// A window's events are held as plain values and written into its span
// when it closes (heldEvents), through an eventSink: in a running server
// in OTLP encoding, exported with the window span. A sampled step's
// events are built where they are held, at the end of the held events,
// and join the window when the step's timing arrives: built elsewhere and
// copied in then, they were fetched from memory again after the forward
// pass had evicted them.
type stepTracer struct {
	// What every step's hooks read comes first, in as few cache lines as
	// may be: in a server the forward pass evicts them between two hooks.
	mu         sync.Mutex
	disabled   bool
	pending    []pendingStep // oldest first, at most maxPendingSteps
	held       heldEvents    // the open window's events, then the pending steps'
	win        *stepWindow
	sampler    StepSampler
	rich       StepSampler
	now        func() time.Time // time.Now; tests make it deterministic
	visitor    *stepVisitor
	interval   uint64
	eventLimit int

	spans  *spanStarter
	log    *slog.Logger
	export *exportProcessor // see eventSink
	seq    int64
	events eventBuilder
}

// maxPendingSteps bounds the sampled steps waiting for their timing.
const maxPendingSteps = 4

// heldEvents are the events of the open window (the first inWindow of
// order), kept as plain values and written into its span all at once when
// it closes (writeContent), followed by those of the sampled steps still
// waiting for their timing, in step order.
// Written one step at a time, each event found the caches emptied by the
// forward pass and the HTTP handlers in between, and fetched the code, the
// keys' encodings and the buffer from memory at every step; written
// together, only a window's first events do. In profiles of servers on the
// 15M shape, the step events' share of CPU fell from 0.12 to 0.06 %
// (docs/tracing-overhead.md). The exported span is the same: each event
// carries its own timestamp. The slices keep their memory from window to
// window.
type heldEvents struct {
	order    []heldEvent
	steps    []stepEvent // summaries; their snapshots are in snaps
	snaps    []requestSnapshot
	inWindow int // the open window's events: order[:inWindow]
}

// heldEvent is one event of the open window: a summary (steps[i]) or a
// snapshot (snaps[i]), at its step's time.
type heldEvent struct {
	at      time.Time
	summary bool
	i       int
}

// maxHeldEvents bounds the capacity the held slices keep between windows.
const maxHeldEvents = 4096

// stepWindow is the open scheduler_steps_<k> span.
type stepWindow struct {
	span   trace.Span
	start  uint64
	last   uint64
	events int
	sink   eventSink
}

// pendingStep is a sampled step waiting for its timing: its events are
// the events of heldEvents.order from first on, up to the next pending
// step's. summary is its summary's index in heldEvents.steps, so that the
// timing finds it without reading the held order, evicted by then.
type pendingStep struct {
	step    uint64
	first   int // in heldEvents.order
	summary int // in heldEvents.steps
}

// stepEvent is the content of one step.BATCH_SUMMARY. It keeps plain
// values (about a seventh of the size of the attributes); the event's
// attributes are written from them when the window closes
// (writeAttributes: encoded for export, or built for the SDK, which copies
// them).
type stepEvent struct {
	step    uint64
	summary stepSummary
	timed   bool // prepare, forward and sample are set
}

// stepSummary is the content of step.BATCH_SUMMARY.
type stepSummary struct {
	startNS, endNS, durationUS                int64
	running, waiting                          int
	prefillReqs, decodeReqs                   int
	scheduledTokens, prefillTokens, decodeTok int
	finished, preempted                       int
	kvUsage                                   float64
	kvTotal, kvFree                           int
	prepareUS, forwardUS, sampleUS            int64
}

// requestSnapshot is the content of one step.REQUEST_SNAPSHOT.
type requestSnapshot struct {
	step                                  uint64
	id                                    string
	decode                                bool
	prompt, computedBefore, output        int
	preemptions, scheduled                int
	blocksAllocated, blocksCached, cached int
}

func newStepTracer(spans *spanStarter, c Config, export *exportProcessor) *stepTracer {
	return &stepTracer{
		export:     export,
		now:        time.Now,
		spans:      spans,
		sampler:    c.StepSampler,
		rich:       c.RichSampler,
		interval:   uint64(c.StepClosureInterval),
		eventLimit: c.MaxEventsPerSpan,
		log:        c.Logger,
		events:     newEventBuilder(make([]attribute.KeyValue, 0, summaryAttrs)),
		pending:    make([]pendingStep, 0, maxPendingSteps),
		visitor:    newStepVisitor(),
	}
}

// stepBuilt is called at the end of Schedule.
func (s *stepTracer) stepBuilt(out *scheduler.Output, v scheduler.StepView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disabled {
		return
	}
	step := out.Step
	if !s.sampler.SampleStep(step) {
		if len(s.pending) == 0 {
			s.closeIfDueLocked(step)
		}
		return
	}
	if len(s.pending) == maxPendingSteps {
		s.flushLocked(s.pending[0].step)
	}
	s.pending = append(s.pending, pendingStep{step: step, first: len(s.held.order), summary: len(s.held.steps)})
	s.visitor.build(&s.held, out, v, s.rich.SampleStep(step), s.now())
}

// stepVisitor adds a step's events to the held events: its summary and,
// from the running requests, its snapshots. The tracer keeps one, with its
// method value made once: a closure handed to StepView.Running escapes,
// which cost an allocation per step.
type stepVisitor struct {
	h     *heldEvents
	step  uint64
	at    time.Time
	visit func(r scheduler.RequestView, scheduled, computedBefore int) // add
}

func newStepVisitor() *stepVisitor {
	v := &stepVisitor{}
	v.visit = v.add
	return v
}

// build adds the summary and, when rich, the snapshots to h: the counts
// come with the view (StepView.Batch); only a rich step visits the running
// requests, O(1) each. now is the end of scheduling, the events' time.
func (vis *stepVisitor) build(h *heldEvents, out *scheduler.Output, v scheduler.StepView, rich bool, now time.Time) {
	start := v.StartTime()
	h.steps = append(h.steps, stepEvent{step: out.Step})
	h.order = append(h.order, heldEvent{at: now, summary: true, i: len(h.steps) - 1})
	p := &h.steps[len(h.steps)-1]
	if rich {
		vis.h, vis.step, vis.at = h, out.Step, now
		v.Running(vis.visit)
		vis.h = nil
	}
	sum := &p.summary
	b := v.Batch()
	sum.prefillReqs, sum.decodeReqs, sum.prefillTokens, sum.decodeTok = b.PrefillReqs, b.DecodeReqs, b.PrefillTokens, b.DecodeTokens
	sum.startNS, sum.endNS, sum.durationUS = monotonicNS(start), monotonicNS(now), now.Sub(start).Microseconds()
	sum.running, sum.waiting = v.NumRunning(), v.NumWaiting()
	sum.scheduledTokens = out.TotalNumScheduledTokens
	sum.finished, sum.preempted = v.NumFinishedSincePrevStep(), len(out.PreemptedRequestIDs)
	sum.kvUsage, sum.kvTotal, sum.kvFree = v.KVUsage(), v.KVBlocksTotal(), v.KVBlocksFree()
}

// add adds the snapshot of one running request.
func (vis *stepVisitor) add(r scheduler.RequestView, scheduled, computedBefore int) {
	h := vis.h
	h.order = append(h.order, heldEvent{at: vis.at, i: len(h.snaps)})
	h.snaps = append(h.snaps, requestSnapshot{
		step: vis.step, id: r.RequestID(), decode: r.NumOutputTokens() > 0, prompt: r.NumPromptTokens(), computedBefore: computedBefore,
		output: r.NumOutputTokens(), preemptions: r.NumPreemptions(), scheduled: scheduled,
		blocksAllocated: r.BlocksAllocated(), blocksCached: r.BlocksCached(), cached: r.NumCachedTokens(),
	})
}

// summaryAttrs is the number of step.BATCH_SUMMARY attributes: 16 from the
// scheduler and 3 device timings added when the step has executed.
const summaryAttrs = 16 + 3

// stepKeys are the attribute keys of the step events.
var stepKeys = struct {
	stepID, startNS, endNS, durationUS, running, waiting               *eventKey
	prefillReqs, decodeReqs, scheduledTok, prefillTok, decodeTok       *eventKey
	finished, preempted, kvUsage, kvTotal, kvFree                      *eventKey
	forwardUS, sampleUS, prepareUS                                     *eventKey
	requestID, phase, prompt, computed, output, preemptions, scheduled *eventKey
	blocksAllocated, blocksCached, effectivePrompt                     *eventKey
}{
	stepID: newEventKey(AttrStepID), startNS: newEventKey(AttrStepTSStartNS), endNS: newEventKey(AttrStepTSEndNS),
	durationUS: newEventKey(AttrStepDurationUS),
	running:    newEventKey(AttrQueueRunningDepth), waiting: newEventKey(AttrQueueWaitingDepth),
	prefillReqs: newEventKey(AttrBatchNumPrefill), decodeReqs: newEventKey(AttrBatchNumDecode),
	scheduledTok: newEventKey(AttrBatchScheduledTok), prefillTok: newEventKey(AttrBatchPrefillTokens),
	decodeTok: newEventKey(AttrBatchDecodeTokens), finished: newEventKey(AttrBatchNumFinished),
	preempted: newEventKey(AttrBatchNumPreempted), kvUsage: newEventKey(AttrKVUsageGPURatio),
	kvTotal: newEventKey(AttrKVBlocksTotalGPU), kvFree: newEventKey(AttrKVBlocksFreeGPU),
	forwardUS: newEventKey(AttrDeviceForwardUS), sampleUS: newEventKey(AttrDeviceSampleUS),
	prepareUS: newEventKey(AttrRunnerPrepareUS),
	requestID: newEventKey(AttrSnapRequestID), phase: newEventKey(AttrSnapPhase),
	prompt: newEventKey(AttrSnapNumPromptTokens), computed: newEventKey(AttrSnapNumComputed),
	output: newEventKey(AttrSnapNumOutputTokens), preemptions: newEventKey(AttrSnapNumPreemptions),
	scheduled: newEventKey(AttrSnapScheduledThisStep), blocksAllocated: newEventKey(AttrSnapKVBlocksAllocated),
	blocksCached: newEventKey(AttrSnapKVBlocksCached), effectivePrompt: newEventKey(AttrSnapEffectivePromptLn),
}

// writeAttributes writes step.BATCH_SUMMARY's attributes.
func (p *stepEvent) writeAttributes(w *eventAttrs) {
	k, s := &stepKeys, &p.summary
	w.int(k.stepID, int64(p.step))
	w.int(k.startNS, s.startNS)
	w.int(k.endNS, s.endNS)
	w.int(k.durationUS, s.durationUS)
	w.int(k.running, int64(s.running))
	w.int(k.waiting, int64(s.waiting))
	w.int(k.prefillReqs, int64(s.prefillReqs))
	w.int(k.decodeReqs, int64(s.decodeReqs))
	w.int(k.scheduledTok, int64(s.scheduledTokens))
	w.int(k.prefillTok, int64(s.prefillTokens))
	w.int(k.decodeTok, int64(s.decodeTok))
	w.int(k.finished, int64(s.finished))
	w.int(k.preempted, int64(s.preempted))
	w.float(k.kvUsage, s.kvUsage)
	w.int(k.kvTotal, int64(s.kvTotal))
	w.int(k.kvFree, int64(s.kvFree))
	if p.timed {
		w.int(k.forwardUS, s.forwardUS)
		w.int(k.sampleUS, s.sampleUS)
		w.int(k.prepareUS, s.prepareUS)
	}
}

// writeAttributes writes one step.REQUEST_SNAPSHOT's attributes.
func (r *requestSnapshot) writeAttributes(w *eventAttrs) {
	k := &stepKeys
	phase := scheduler.PhasePrefill
	if r.decode {
		phase = scheduler.PhaseDecode
	}
	w.int(k.stepID, int64(r.step))
	w.str(k.requestID, r.id)
	w.str(k.phase, string(phase))
	w.int(k.prompt, int64(r.prompt))
	w.int(k.computed, int64(r.computedBefore))
	w.int(k.output, int64(r.output))
	w.int(k.preemptions, int64(r.preemptions))
	w.int(k.scheduled, int64(r.scheduled))
	w.int(k.blocksAllocated, int64(r.blocksAllocated))
	w.int(k.blocksCached, int64(r.blocksCached))
	if r.cached > 0 {
		w.int(k.effectivePrompt, int64(r.prompt-r.cached))
	}
}

// stepTiming attaches the device timing of step and emits its events.
func (s *stepTracer) stepTiming(step uint64, prepare, forward, sample time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disabled {
		return
	}
	for _, p := range s.pending {
		if p.step == step {
			e := &s.held.steps[p.summary]
			e.timed = true
			e.summary.forwardUS, e.summary.sampleUS = forward.Microseconds(), sample.Microseconds()
			e.summary.prepareUS = prepare.Microseconds()
		}
	}
	s.flushLocked(step)
}

// flushLocked emits the events of the pending steps up to and including
// step, in step order: they join the open window.
func (s *stepTracer) flushLocked(step uint64) {
	for len(s.pending) > 0 && s.pending[0].step <= step && !s.disabled {
		p := s.pending[0]
		n := copy(s.pending, s.pending[1:]) // at most maxPendingSteps: keep the array
		s.pending = s.pending[:n]
		end := len(s.held.order)
		if n > 0 {
			end = s.pending[0].first
		}
		s.admitStepLocked(p.step, end-p.first)
		s.closeIfDueLocked(p.step + 1)
	}
}

// admitStepLocked moves the n held events of step past the open window's
// into the window: the first one by one (admitEventLocked), which opens or
// closes a window as needed, then as many as the window has room for at
// once. Only the first event of a window needs its time (the window's
// start or end); in a server the held events are evicted by the time the
// step's timing arrives, and reading every event's time cost a cache miss
// per few events.
func (s *stepTracer) admitStepLocked(step uint64, n int) {
	for n > 0 && !s.disabled {
		s.admitEventLocked(step)
		n--
		if s.win == nil {
			return // opening failed: step tracing is disabled
		}
		k := min(n, s.eventLimit-s.win.events)
		s.held.inWindow += k
		s.win.events += k
		n -= k
	}
}

// admitEventLocked moves the first held event past the open window's, of
// a step being emitted, into the window, opening a window if none is open
// and closing a full one first, so that no event is dropped by the SDK
// limit. A window that closes leaves the events after its own held
// (closeLocked), so the event moved is always order[inWindow].
func (s *stepTracer) admitEventLocked(step uint64) {
	if s.disabled {
		return
	}
	at := s.held.order[s.held.inWindow].at
	s.closeIfDueLocked(step) // an untimed step may have kept it open past its interval
	if s.win != nil && s.win.events >= s.eventLimit {
		s.closeLocked(at)
	}
	if s.win == nil && !s.openLocked(step, at) {
		return
	}
	s.held.inWindow++
	s.win.events++
	s.win.last = step
}

// writeContent writes the window's held events into its span, in the
// order they came (spanContent: the tracer's lock is held).
func (s *stepTracer) writeContent(e *eventSink, b *eventBuilder, span trace.Span) {
	h := &s.held
	for _, ev := range h.order[:h.inWindow] {
		if ev.summary {
			e.addFrom(b, span, EventBatchSummary, ev.at, &h.steps[ev.i])
		} else {
			e.addFrom(b, span, EventRequestSnapshot, ev.at, &h.snaps[ev.i])
		}
	}
}

// size is about the bytes of the open window's events' encoding.
func (h *heldEvents) size() int {
	n := 0
	for _, ev := range h.order[:h.inWindow] {
		if ev.summary {
			n += summaryBytes
		} else {
			n += snapshotBytes
		}
	}
	return n
}

// About the encoded size of a step.BATCH_SUMMARY and a
// step.REQUEST_SNAPSHOT.
const (
	summaryBytes  = 600
	snapshotBytes = 420
)

// dropWindowLocked drops the events of the window just written, moving
// the pending steps' events (at most maxPendingSteps steps') to the front
// of the held memory, which is kept up to maxHeldEvents of each kind.
func (s *stepTracer) dropWindowLocked() {
	h := &s.held
	rest := h.order[h.inWindow:]
	firstStep, firstSnap := len(h.steps), len(h.snaps)
	for _, ev := range rest {
		if ev.summary {
			firstStep = min(firstStep, ev.i)
		} else {
			firstSnap = min(firstSnap, ev.i)
		}
	}
	for i := range rest {
		if rest[i].summary {
			rest[i].i -= firstStep
		} else {
			rest[i].i -= firstSnap
		}
	}
	for i := range s.pending {
		s.pending[i].first -= h.inWindow
		s.pending[i].summary -= firstStep
	}
	h.order = keepTail(h.order, h.inWindow)
	h.steps = keepTail(h.steps, firstStep)
	h.snaps = keepTail(h.snaps, firstSnap)
	h.inWindow = 0
}

// keepTail moves s[from:] to the front of s, clearing what it leaves (no
// request id stays pinned), and returns it, in new memory when s's holds
// more than maxHeldEvents.
func keepTail[T any](s []T, from int) []T {
	n := copy(s, s[from:])
	clear(s[n:])
	if cap(s) > maxHeldEvents {
		return slices.Clone(s[:n])
	}
	return s[:n]
}

// closeIfDueLocked closes the open window once next is closure-interval
// steps past its start. A window only exists once it holds an event.
func (s *stepTracer) closeIfDueLocked(next uint64) {
	if s.win != nil && next >= s.win.start+s.interval {
		s.closeLocked(s.now())
	}
}

// openLocked starts scheduler_steps_<k>; a failure disables step tracing.
func (s *stepTracer) openLocked(step uint64, at time.Time) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			s.disableLocked(fmt.Errorf("panic: %v", p))
			ok = false
		}
	}()
	seq := s.seq + 1
	span := s.spans.startNamed(context.Background(), fmt.Sprintf("%s%d", SpanStepPrefix, seq), at,
		attribute.Int64(AttrSpanSequence, seq),
		attribute.Int64(AttrStepRangeStart, int64(step)),
		attribute.Int64(AttrClosureInterval, int64(s.interval)))
	if span == nil || !span.SpanContext().IsValid() {
		s.disableLocked(fmt.Errorf("tracer returned an invalid span"))
		return false
	}
	s.seq = seq
	s.win = &stepWindow{span: span, start: step, last: step, sink: newEventSink(s.export, span)}
	return true
}

// closeLocked ends the open window; a failure only warns.
func (s *stepTracer) closeLocked(at time.Time) {
	w := s.win
	s.win = nil
	defer func() {
		if p := recover(); p != nil {
			s.log.Warn("step tracing: closing a step span failed", "err", p)
		}
	}()
	defer s.dropWindowLocked() // also when the span was dropped unwritten (a full queue)
	w.span.SetAttributes(attribute.Int64(AttrStepRangeEnd, int64(w.last)))
	w.sink.finish(&s.events, w.span, s, s.held.size(), at)
}

func (s *stepTracer) disableLocked(err error) {
	s.disabled = true
	s.pending = nil
	s.held = heldEvents{}
	s.log.Warn("step tracing disabled: opening a step span failed", "err", err)
}

// shutdown emits a pending step and closes the last window.
func (s *stepTracer) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disabled {
		return
	}
	s.flushLocked(math.MaxUint64)
	if s.win != nil {
		s.closeLocked(s.now())
	}
}
