package tracing

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/scheduler"
)

// stepScript is a sequence of engine calls into step tracing, generated
// once and replayed against several Telemetry instances.
type stepScript struct {
	interval, eventLimit int
	summary, rich        map[uint64]bool
	ops                  []stepOp
}

// stepOp is one call: StepBuilt (out and view set) or OnStep.
type stepOp struct {
	out    *scheduler.Output
	view   *fakeStep
	timing *engine.StepRecord
}

// randomStepScript makes steps with random batches, two-stage sampling,
// closure interval and event limit, and timings that come at once, a few
// steps late, or never.
func randomStepScript(r *rand.Rand) stepScript {
	sc := stepScript{
		interval: MinStepClosureInterval + r.IntN(30),
		summary:  map[uint64]bool{},
		rich:     map[uint64]bool{},
	}
	if r.IntN(2) == 0 {
		sc.eventLimit = 3 + r.IntN(60)
	}
	steps := 1 + r.IntN(150)
	var late []*engine.StepRecord
	for s := uint64(1); s <= uint64(steps); s++ {
		sc.summary[s] = r.Float64() < 0.8
		sc.rich[s] = r.Float64() < 0.3
		out, view := randomBatch(r, s)
		sc.ops = append(sc.ops, stepOp{out: out, view: view})
		rec := &engine.StepRecord{Step: s, Prepare: time.Duration(r.IntN(1e6)), Forward: time.Duration(r.Int64N(1e10)),
			Sample: time.Duration(r.IntN(1e7))}
		switch r.IntN(4) {
		case 0: // a few steps late
			late = append(late, rec)
		case 1: // never (the step scheduled nothing)
		default:
			sc.ops = append(sc.ops, stepOp{timing: rec})
		}
		if len(late) > 0 && r.IntN(3) == 0 {
			sc.ops = append(sc.ops, stepOp{timing: late[0]})
			late = late[1:]
		}
	}
	return sc
}

func randomBatch(r *rand.Rand, step uint64) (*scheduler.Output, *fakeStep) {
	n := r.IntN(12)
	view := &fakeStep{scheduled: map[string]int{}, waiting: r.IntN(50), finished: r.IntN(3),
		start: baseNow.Add(time.Duration(step) * time.Millisecond)}
	out := &scheduler.Output{Step: step, NumScheduledTokens: view.scheduled}
	for i := range n {
		id := randomString(r)
		if r.IntN(8) == 0 {
			id = strings.Repeat("long-request-id-", 1+r.IntN(20)) // multi-byte varint lengths
		}
		req := &fakeReq{id: id + "-" + string(rune('a'+i)), prompt: 1 + r.IntN(4000), computed: r.IntN(4000),
			output: r.IntN(3) * r.IntN(500), preemptions: r.IntN(2), cached: r.IntN(2) * r.IntN(64),
			blocksAllocated: r.IntN(300), blocksHit: r.IntN(4)}
		view.running = append(view.running, req)
		if r.IntN(6) > 0 {
			view.scheduled[req.id] = 1 + r.IntN(512)
			out.TotalNumScheduledTokens += view.scheduled[req.id]
		}
	}
	if r.IntN(5) == 0 {
		out.PreemptedRequestIDs = []string{"p"}
	}
	return out, view
}

// exportStepScript replays sc on a Telemetry whose only processor is an
// export processor over a capturing client, with events written straight
// into the window's encoding (direct) or added through the SDK, and returns
// the exported spans. The step tracer's clock is a counter, so both ways
// see the same timestamps.
func exportStepScript(t *testing.T, sc stepScript, direct bool) []exportedSpan {
	t.Helper()
	tel, client := exportTelemetry(t, direct, func(c *Config) {
		c.StepTracingEnabled = true
		c.StepClosureInterval, c.MaxEventsPerSpan = sc.interval, sc.eventLimit
		c.StepSampler = stepSet(func(s uint64) bool { return sc.summary[s] })
		c.RichSampler = stepSet(func(s uint64) bool { return sc.rich[s] })
	})
	obs := tel.SchedulerObserver()
	for _, op := range sc.ops {
		if op.timing != nil {
			tel.OnStep(op.timing)
		} else {
			obs.StepBuilt(op.out, op.view)
		}
	}
	require.NoError(t, tel.Shutdown(context.Background()))
	spans := decodeExported(t, client)
	for _, s := range spans {
		require.Equal(t, ScopeStep, s.scope)
	}
	return spans
}

// TestStepEventsExportedDirectlyMatchTheSDKPath: the window spans that a
// server exports (events encoded straight into the window) decode the
// same as when every event goes through the SDK's AddEvent, which the
// other step tests check in detail.
func TestStepEventsExportedDirectlyMatchTheSDKPath(t *testing.T) {
	for seed := range uint64(25) {
		requireSameStepExport(t, randomStepScript(rand.New(rand.NewPCG(seed, 3))))
	}
}

// FuzzStepEventsExport grows the comparison from fuzzed seeds.
func FuzzStepEventsExport(f *testing.F) {
	f.Add(uint64(1))
	f.Add(uint64(4711))
	f.Fuzz(func(t *testing.T, seed uint64) {
		requireSameStepExport(t, randomStepScript(rand.New(rand.NewPCG(seed, 5))))
	})
}

func requireSameStepExport(t *testing.T, sc stepScript) {
	t.Helper()
	direct := exportStepScript(t, sc, true)
	events := requireSameExport(t, exportStepScript(t, sc, false), direct)
	want := 0
	for _, op := range sc.ops {
		if op.out != nil && sc.summary[op.out.Step] {
			want++
			if sc.rich[op.out.Step] {
				want += len(op.view.running)
			}
		}
	}
	require.Equal(t, want, events, "every sampled step's summary and snapshots")
}

// everyStepExported is a Telemetry exporting directly, with every step
// sampled and rich-sampled, in windows of the shortest interval.
func everyStepExported(t *testing.T) (*Telemetry, *captureClient) {
	t.Helper()
	return exportTelemetry(t, true, func(c *Config) {
		c.StepTracingEnabled = true
		c.StepClosureInterval = MinStepClosureInterval
		c.StepSampler, c.RichSampler = stepSet(func(uint64) bool { return true }), stepSet(func(uint64) bool { return true })
	})
}

// TestStepWindowHoldsItsEventsUntilItCloses: a window's events are kept as
// values and written into its span when it closes; then nothing of them is
// kept (no request id pinned).
func TestStepWindowHoldsItsEventsUntilItCloses(t *testing.T) {
	tel, client := everyStepExported(t)
	obs := tel.SchedulerObserver()
	r := rand.New(rand.NewPCG(11, 11))
	want := 0
	for s := uint64(1); s < MinStepClosureInterval; s++ {
		out, view := randomBatch(r, s)
		obs.StepBuilt(out, view)
		tel.OnStep(&engine.StepRecord{Step: s})
		want += 1 + len(view.running)
	}
	st := tel.steps
	st.mu.Lock()
	require.Len(t, st.held.order, want, "every summary and snapshot is held")
	snaps := st.held.snaps[:cap(st.held.snaps)]
	st.mu.Unlock()
	tel.export.mu.Lock()
	require.True(t, tel.export.cur == nil || tel.export.cur.spans == 0, "nothing is written before the window closes")
	tel.export.mu.Unlock()

	out, view := randomBatch(r, MinStepClosureInterval)
	obs.StepBuilt(out, view)
	tel.OnStep(&engine.StepRecord{Step: MinStepClosureInterval}) // the window is due
	st.mu.Lock()
	require.Empty(t, st.held.order)
	require.Empty(t, st.held.steps)
	for _, sn := range snaps {
		require.Empty(t, sn.id, "no request id is pinned")
	}
	st.mu.Unlock()
	require.NoError(t, tel.Shutdown(context.Background()))
	spans := decodeExported(t, client)
	require.Len(t, spans, 1)
	require.Len(t, spans[0].span.Events, want+1+len(view.running), "every held event was written")
}

// TestDroppedStepWindowTakesItsEvents: a window dropped at the full export
// queue takes its held events with it, and the next window holds only its
// own steps' events.
func TestDroppedStepWindowTakesItsEvents(t *testing.T) {
	tel, client := everyStepExported(t)
	obs := tel.SchedulerObserver()
	r := rand.New(rand.NewPCG(12, 12))
	setQueueSpans := func(n int) (old int) {
		tel.export.mu.Lock()
		defer tel.export.mu.Unlock()
		old, tel.export.maxQueueSpans = tel.export.maxQueueSpans, n
		return old
	}
	full := setQueueSpans(0) // the first window's end finds the queue full
	want := 0
	for s := uint64(1); s <= 2*MinStepClosureInterval; s++ {
		out, view := randomBatch(r, s)
		obs.StepBuilt(out, view)
		tel.OnStep(&engine.StepRecord{Step: s})
		if s == MinStepClosureInterval {
			setQueueSpans(full)
		} else if s > MinStepClosureInterval {
			want += 1 + len(view.running)
		}
	}
	require.NoError(t, tel.Shutdown(context.Background()))
	spans := decodeExported(t, client)
	require.Len(t, spans, 1, "the first window was dropped")
	require.Len(t, spans[0].span.Events, want, "the second window holds its own events only")
	require.Equal(t, int64(1), tel.export.totals.dropped)
}
