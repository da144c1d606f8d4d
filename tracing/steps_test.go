package tracing

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/scheduler"
)

var summaryKeys = []string{AttrStepID, AttrStepTSStartNS, AttrStepTSEndNS, AttrStepDurationUS,
	AttrQueueRunningDepth, AttrQueueWaitingDepth, AttrBatchNumPrefill, AttrBatchNumDecode,
	AttrBatchScheduledTok, AttrBatchPrefillTokens, AttrBatchDecodeTokens, AttrBatchNumFinished,
	AttrBatchNumPreempted, AttrKVUsageGPURatio, AttrKVBlocksTotalGPU, AttrKVBlocksFreeGPU}

var deviceKeys = []string{AttrDeviceForwardUS, AttrDeviceSampleUS, AttrRunnerPrepareUS}

var snapshotKeys = []string{AttrStepID, AttrSnapRequestID, AttrSnapPhase, AttrSnapNumPromptTokens,
	AttrSnapNumComputed, AttrSnapNumOutputTokens, AttrSnapNumPreemptions, AttrSnapScheduledThisStep,
	AttrSnapKVBlocksAllocated, AttrSnapKVBlocksCached}

// stepSet is a predicate sampler for exact expectations.
type stepSet func(uint64) bool

func (f stepSet) SampleStep(s uint64) bool { return f(s) }

// batch returns a step view with one prefilling request (cached prefix) and
// one decoding request.
func batch(step uint64) (*scheduler.Output, *fakeStep) {
	pre := &fakeReq{id: "pre", prompt: 32, computed: 16, cached: 16, blocksAllocated: 3, blocksHit: 1}
	dec := &fakeReq{id: "dec", prompt: 8, computed: 12, output: 4, blocksAllocated: 1, preemptions: 1}
	out := &scheduler.Output{Step: step, TotalNumScheduledTokens: 17, PreemptedRequestIDs: []string{"x"},
		NumScheduledTokens: map[string]int{"pre": 16, "dec": 1}}
	v := &fakeStep{running: []*fakeReq{pre, dec}, scheduled: out.NumScheduledTokens, waiting: 3, finished: 2,
		start: time.Now().Add(-time.Millisecond)}
	return out, v
}

// runSteps drives steps from..to through StepBuilt and, when timed, OnStep.
func runSteps(h *harness, from, to uint64, timed bool) {
	for s := from; s <= to; s++ {
		out, v := batch(s)
		h.obs.StepBuilt(out, v)
		if timed {
			h.tel.OnStep(&engine.StepRecord{Step: s, Start: v.start, End: time.Now(),
				Prepare: 3 * time.Microsecond, Forward: 2 * time.Millisecond, Sample: 40 * time.Microsecond})
		}
	}
}

func stepHarness(t *testing.T, interval int, summary, rich StepSampler, eventLimit int) *harness {
	return newHarness(t, func(c *Config) {
		c.EnableJourneyTracing = false
		c.StepTracingEnabled = true
		c.StepClosureInterval = interval
		c.StepSampler, c.RichSampler = summary, rich
		c.MaxEventsPerSpan = eventLimit
	})
}

func TestStepSummaryAndSnapshots(t *testing.T) {
	all := stepSet(func(uint64) bool { return true })
	h := stepHarness(t, 10, all, all, 0)
	runSteps(h, 1, 1, true)
	require.NoError(t, h.tel.Shutdown(t.Context()))
	win := h.one(SpanStepPrefix + "1")
	assert.Equal(t, ScopeStep, win.InstrumentationScope().Name)
	assert.False(t, win.Parent().IsValid(), "step spans are roots")
	assert.Equal(t, []string{EventBatchSummary, EventRequestSnapshot, EventRequestSnapshot}, eventNames(win))
	sum := event(t, win, EventBatchSummary)
	for _, k := range append(summaryKeys, deviceKeys...) {
		assert.Contains(t, sum, k)
	}
	want := map[string]int64{AttrStepID: 1, AttrQueueRunningDepth: 2, AttrQueueWaitingDepth: 3,
		AttrBatchNumPrefill: 1, AttrBatchNumDecode: 1, AttrBatchScheduledTok: 17, AttrBatchPrefillTokens: 16,
		AttrBatchDecodeTokens: 1, AttrBatchNumFinished: 2, AttrBatchNumPreempted: 1, AttrKVBlocksTotalGPU: 100,
		AttrKVBlocksFreeGPU: 75, AttrDeviceForwardUS: 2000, AttrDeviceSampleUS: 40, AttrRunnerPrepareUS: 3}
	for k, v := range want {
		assert.Equal(t, v, sum[k].AsInt64(), k)
	}
	assert.Equal(t, 0.25, sum[AttrKVUsageGPURatio].AsFloat64())
	assert.GreaterOrEqual(t, sum[AttrStepTSEndNS].AsInt64(), sum[AttrStepTSStartNS].AsInt64())
	assert.Equal(t, (sum[AttrStepTSEndNS].AsInt64()-sum[AttrStepTSStartNS].AsInt64())/1000, sum[AttrStepDurationUS].AsInt64())

	snaps := events(win, EventRequestSnapshot)
	for _, s := range snaps {
		for _, k := range snapshotKeys {
			assert.Contains(t, s, k)
		}
	}
	pre, dec := snaps[0], snaps[1]
	assert.Equal(t, "pre", pre[AttrSnapRequestID].AsString())
	assert.Equal(t, "PREFILL", pre[AttrSnapPhase].AsString())
	assert.Equal(t, int64(16), pre[AttrSnapEffectivePromptLn].AsInt64())
	assert.Equal(t, int64(16), pre[AttrSnapNumComputed].AsInt64(), "computed before this step")
	assert.Equal(t, int64(1), pre[AttrSnapKVBlocksCached].AsInt64())
	assert.Equal(t, "DECODE", dec[AttrSnapPhase].AsString())
	assert.NotContains(t, dec, AttrSnapEffectivePromptLn, "only when some tokens were cached")
	assert.Equal(t, int64(1), dec[AttrSnapScheduledThisStep].AsInt64())
	assert.Equal(t, int64(1), dec[AttrSnapNumPreemptions].AsInt64())
}

func TestStepWindowsCloseByStepCount(t *testing.T) {
	all := stepSet(func(uint64) bool { return true })
	none := stepSet(func(uint64) bool { return false })
	h := stepHarness(t, 10, all, none, 0)
	runSteps(h, 1, 35, true)
	require.Len(t, h.rec.Ended(), 3, "three full windows closed while running")
	require.NoError(t, h.tel.Shutdown(t.Context()))
	ranges := [][2]int64{{1, 10}, {11, 20}, {21, 30}, {31, 35}}
	for i, r := range ranges {
		w := h.one(fmt.Sprintf("%s%d", SpanStepPrefix, i+1))
		a := attrMap(w.Attributes())
		assert.Equal(t, int64(i+1), a[AttrSpanSequence].AsInt64())
		assert.Equal(t, r[0], a[AttrStepRangeStart].AsInt64())
		assert.Equal(t, r[1], a[AttrStepRangeEnd].AsInt64())
		assert.Equal(t, int64(10), a[AttrClosureInterval].AsInt64())
		assert.Len(t, w.Events(), int(r[1]-r[0]+1))
		assert.Zero(t, w.DroppedEvents())
	}
}

// TestStepWindowNeverSpansMoreThanItsInterval: steps whose timing never
// comes (they scheduled nothing) hold a sampled step's events back until a
// later step's timing arrives, but that later step's events do not join
// the earlier window once its interval is over.
func TestStepWindowNeverSpansMoreThanItsInterval(t *testing.T) {
	sampled := stepSet(func(s uint64) bool { return s == 1 || s == 31 })
	none := stepSet(func(uint64) bool { return false })
	h := stepHarness(t, 10, sampled, none, 0)
	runSteps(h, 1, 30, false) // no timing
	runSteps(h, 31, 40, true)
	require.NoError(t, h.tel.Shutdown(t.Context()))
	for i, r := range [][2]int64{{1, 1}, {31, 31}} {
		a := attrMap(h.one(fmt.Sprintf("%s%d", SpanStepPrefix, i+1)).Attributes())
		assert.Equal(t, r[0], a[AttrStepRangeStart].AsInt64())
		assert.Equal(t, r[1], a[AttrStepRangeEnd].AsInt64())
	}
}

func TestStepWindowOnlyWithEvents(t *testing.T) {
	odd := stepSet(func(s uint64) bool { return s == 25 })
	h := stepHarness(t, 10, odd, odd, 0)
	runSteps(h, 1, 40, false)
	require.NoError(t, h.tel.Shutdown(t.Context()))
	require.Len(t, h.rec.Ended(), 1, "steps without events open no window")
	w := h.one(SpanStepPrefix + "1")
	a := attrMap(w.Attributes())
	assert.Equal(t, int64(25), a[AttrStepRangeStart].AsInt64())
	assert.Equal(t, int64(25), a[AttrStepRangeEnd].AsInt64())
	sum := event(t, w, EventBatchSummary)
	for _, k := range deviceKeys {
		assert.NotContains(t, sum, k, "no timing came for this step")
	}
}

// TestStepWindowClosesBeforeEventLimit: many snapshots per step must never be
// dropped by the SDK's per-span event limit.
func TestStepWindowClosesBeforeEventLimit(t *testing.T) {
	all := stepSet(func(uint64) bool { return true })
	h := stepHarness(t, 100, all, all, 5)
	runSteps(h, 1, 7, true) // 3 events per step, 21 events, limit 5 per span
	require.NoError(t, h.tel.Shutdown(t.Context()))
	total := 0
	for _, s := range h.rec.Ended() {
		assert.LessOrEqual(t, len(s.Events()), 5)
		assert.Zero(t, s.DroppedEvents())
		total += len(s.Events())
	}
	assert.Equal(t, 21, total)
	assert.Len(t, h.rec.Ended(), 5)
}

func TestStepTwoStageSampling(t *testing.T) {
	h := stepHarness(t, 10000, NewHashStepSampler(0.5, 1), NewHashStepSampler(0.25, 2), 0)
	const n = 2000
	runSteps(h, 1, n, true)
	require.NoError(t, h.tel.Shutdown(t.Context()))
	var summaries, rich int
	for _, s := range h.rec.Ended() {
		summaries += len(events(s, EventBatchSummary))
		rich += len(events(s, EventRequestSnapshot)) / 2
	}
	assert.InDelta(t, n*0.5, summaries, n*0.05)
	assert.InDelta(t, n*0.5*0.25, rich, n*0.05, "rich applies only to sampled steps")
	// Same seeds, same decisions.
	a, b := NewHashStepSampler(0.3, 9), NewHashStepSampler(0.3, 9)
	for s := range uint64(1000) {
		require.Equal(t, a.SampleStep(s), b.SampleStep(s))
	}
}

func TestHashStepSamplerRates(t *testing.T) {
	tests := []struct {
		rate float64
	}{{0}, {0.001}, {0.01}, {0.1}, {0.5}, {1}}
	for _, tt := range tests {
		s := NewHashStepSampler(tt.rate, 12345)
		const n = 200000
		hits := 0
		for step := range uint64(n) {
			if s.SampleStep(step) {
				hits++
			}
		}
		assert.InDelta(t, tt.rate, float64(hits)/n, 0.002+tt.rate*0.05, "rate %v", tt.rate)
	}
}

// TestStepTracingDisablesWhenSpansCannotOpen: a provider that yields
// invalid spans turns step tracing off with a warning instead of failing.
func TestStepTracingDisablesWhenSpansCannotOpen(t *testing.T) {
	var logs bytes.Buffer
	c := DefaultConfig()
	c.StepClosureInterval = 10
	c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	all := stepSet(func(uint64) bool { return true })
	c.StepSampler, c.RichSampler = all, all
	s := newStepTracer(newSpanStarter(noop.NewTracerProvider(), ScopeStep, SpanStepPrefix, trace.SpanKindInternal, nil), c.withDefaults(), nil)
	for step := uint64(1); step <= 3; step++ {
		out, v := batch(step)
		s.stepBuilt(out, v)
		s.stepTiming(step, 0, 0, 0)
	}
	s.shutdown()
	assert.True(t, s.disabled)
	assert.Nil(t, s.pending)
	assert.Equal(t, 1, strings.Count(logs.String(), "step tracing disabled"), logs.String())
}

// TestStepTimingArrivesAfterTheNextSchedule: an engine that schedules step
// N+1 before step N's timing arrives still gets device time on both, in step
// order; past maxPendingSteps the oldest goes out without it.
func TestStepTimingArrivesAfterTheNextSchedule(t *testing.T) {
	all := stepSet(func(uint64) bool { return true })
	none := stepSet(func(uint64) bool { return false })
	h := stepHarness(t, 1000, all, none, 0)
	timing := func(s uint64) {
		h.tel.OnStep(&engine.StepRecord{Step: s, End: time.Now(), Forward: time.Duration(s) * time.Microsecond})
	}
	build := func(s uint64) { out, v := batch(s); h.obs.StepBuilt(out, v) }
	build(1)
	build(2)
	timing(1)
	build(3)
	timing(2)
	timing(3)
	for s := uint64(4); s <= 4+maxPendingSteps; s++ { // one more than may wait
		build(s)
	}
	for s := uint64(5); s <= 4+maxPendingSteps; s++ {
		timing(s)
	}
	require.NoError(t, h.tel.Shutdown(t.Context()))
	sums := events(h.one(SpanStepPrefix+"1"), EventBatchSummary)
	require.Len(t, sums, 4+maxPendingSteps)
	for i, sum := range sums {
		step := int64(i + 1)
		assert.Equal(t, step, sum[AttrStepID].AsInt64(), "step order")
		if step == 4 {
			assert.NotContains(t, sum, AttrDeviceForwardUS, "pushed out before its timing")
			continue
		}
		assert.Equal(t, step, sum[AttrDeviceForwardUS].AsInt64())
	}
}
