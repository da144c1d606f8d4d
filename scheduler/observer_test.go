package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is an Observer that writes one line per event.
type recorder struct {
	events []string
	steps  []string
}

func (r *recorder) Queued(v RequestView, step uint64) {
	r.events = append(r.events, fmt.Sprintf("QUEUED %s step=%d phase=%s", v.RequestID(), step, v.Phase()))
}

func (r *recorder) Scheduled(v RequestView, step uint64, resumed bool) {
	kind := "FIRST"
	if resumed {
		kind = "RESUME"
	}
	r.events = append(r.events, fmt.Sprintf("SCHEDULED %s step=%d %s prefill=%d/%d", v.RequestID(), step, kind, v.PrefillHighWater(), v.NumPromptTokens()))
}

func (r *recorder) FirstToken(v RequestView, step uint64) {
	r.events = append(r.events, fmt.Sprintf("FIRST_TOKEN %s step=%d decode=%d/%d", v.RequestID(), step, v.NumOutputTokens(), v.MaxTokens()))
}

func (r *recorder) Preempted(v RequestView, step uint64) {
	r.events = append(r.events, fmt.Sprintf("PREEMPTED %s step=%d n=%d", v.RequestID(), step, v.NumPreemptions()))
}

func (r *recorder) Finished(v RequestView, step uint64, reason FinishReason) {
	r.events = append(r.events, fmt.Sprintf("FINISHED %s step=%d %s phase=%s", v.RequestID(), step, reason, v.Phase()))
}

func (r *recorder) StepBuilt(out *Output, v StepView) {
	line := fmt.Sprintf("step=%d run=%d wait=%d fin=%d free=%d/%d", out.Step, v.NumRunning(), v.NumWaiting(),
		v.NumFinishedSincePrevStep(), v.KVBlocksFree(), v.KVBlocksTotal())
	var visited BatchCounts
	v.Running(func(q RequestView, sched, before int) {
		line += fmt.Sprintf(" %s:%d@%d", q.RequestID(), sched, before)
		visited.add(q.NumOutputTokens() > 0, sched)
	})
	if v.Batch() != visited {
		line += fmt.Sprintf(" batch-mismatch:%+v!=%+v", v.Batch(), visited)
	}
	if v.StartTime().IsZero() || time.Since(v.StartTime()) < 0 {
		line += " bad-start"
	}
	r.steps = append(r.steps, line)
}

func TestObserverEvents(t *testing.T) {
	cfg := testConfig()
	cfg.MaxNumBatchedTokens = 8
	s, f := newTestScheduler(t, cfg)
	rec := &recorder{}
	s.SetObserver(rec)
	script := scripted(10, 5, 2)
	f.sample = func(id string, toks []int32) int32 {
		if id == "a" {
			return script(id, toks)
		}
		return 500
	}
	s.Schedule() // step 1, empty
	add(t, s, "a", tokens(10, 10), 4)
	add(t, s, "w", tokens(3, 100), 4)
	step(t, s, f) // step 2: a 8 tokens
	step(t, s, f) // step 3: a 2 tokens -> first token; w admitted
	require.True(t, s.Abort("w", FinishAbort))
	add(t, s, "never", tokens(3, 100), 4)
	require.True(t, s.Abort("never", FinishStop))
	step(t, s, f) // step 4: a samples EOS
	assert.Equal(t, []string{
		"QUEUED a step=1 phase=WAITING",
		"QUEUED w step=1 phase=WAITING",
		"SCHEDULED a step=2 FIRST prefill=0/10",
		"SCHEDULED w step=3 FIRST prefill=0/3",
		"FIRST_TOKEN a step=3 decode=1/4",
		"FIRST_TOKEN w step=3 decode=1/4",
		"FINISHED w step=3 abort phase=DECODE",
		"QUEUED never step=3 phase=WAITING",
		"FINISHED never step=3 stop phase=WAITING",
		"FINISHED a step=4 stop phase=DECODE",
	}, rec.events)
	assert.Equal(t, []string{
		"step=1 run=0 wait=0 fin=0 free=63/63",
		"step=2 run=1 wait=1 fin=0 free=61/63 a:8@0",
		"step=3 run=2 wait=0 fin=0 free=59/63 a:2@8 w:3@0",
		"step=4 run=1 wait=0 fin=2 free=60/63 a:1@10",
	}, rec.steps)
}

func TestObserverPreemptAndResume(t *testing.T) {
	cfg := Config{MaxModelLen: 16, MaxNumBatchedTokens: 64, MaxNumSeqs: 8, BlockSize: 4, NumBlocks: 7, EnablePrefixCaching: true}
	s, f := newTestScheduler(t, cfg)
	rec := &recorder{}
	s.SetObserver(rec)
	add(t, s, "a", tokens(8, 10), 8)
	add(t, s, "b", tokens(8, 100), 8)
	drain(t, s, f)
	var got []string
	for _, e := range rec.events {
		if strings.HasPrefix(e, "SCHEDULED") || strings.HasPrefix(e, "PREEMPTED") {
			got = append(got, e)
		}
	}
	assert.Equal(t, []string{
		"SCHEDULED a step=1 FIRST prefill=0/8",
		"SCHEDULED b step=1 FIRST prefill=0/8",
		"PREEMPTED b step=6 n=1",
		"SCHEDULED b step=9 RESUME prefill=8/8",
	}, got)
}

func TestRequestView(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	add(t, s, "a", tokens(9, 10), 5)
	step(t, s, f)
	state := new(int) // an observer's own state
	add(t, s, "b", tokens(10, 10), 5, func(r *Request) { r.Priority, r.ObserverState = 3, state })
	v, ok := s.Request("b")
	require.True(t, ok)
	assert.Equal(t, PhaseWaiting, v.Phase())
	step(t, s, f)
	v, _ = s.Request("b")
	assert.Equal(t, "b", v.RequestID())
	assert.Equal(t, 10, v.NumPromptTokens())
	assert.Equal(t, 10, v.NumComputedTokens())
	assert.Equal(t, 1, v.NumOutputTokens())
	assert.Equal(t, 5, v.MaxTokens())
	assert.Equal(t, 10, v.PrefillHighWater())
	assert.Equal(t, PhaseDecode, v.Phase())
	assert.Equal(t, 0, v.NumPreemptions())
	assert.Equal(t, 8, v.NumCachedTokens(), "two full blocks of a's prompt")
	assert.Equal(t, 3, v.BlocksAllocated())
	assert.Equal(t, 2, v.BlocksCached())
	assert.Equal(t, 3, v.Priority())
	assert.Same(t, state, v.ObserverState(), "handed back as given")
	a, _ := s.Request("a")
	assert.Nil(t, a.ObserverState())
	_, ok = s.Request("nope")
	assert.False(t, ok)
}

type nopObserver struct{}

func (nopObserver) Queued(RequestView, uint64)                 {}
func (nopObserver) Scheduled(RequestView, uint64, bool)        {}
func (nopObserver) FirstToken(RequestView, uint64)             {}
func (nopObserver) Preempted(RequestView, uint64)              {}
func (nopObserver) Finished(RequestView, uint64, FinishReason) {}
func (nopObserver) StepBuilt(_ *Output, v StepView) {
	v.Running(func(RequestView, int, int) {})
}

// A steady decode step allocates nothing, with or without an observer
// (block commits, hashing and cache evictions included: 40 steps cross
// block boundaries).
func TestSteadyDecodeDoesNotAllocate(t *testing.T) {
	for _, obs := range []Observer{nil, nopObserver{}} {
		d := newDecodeBench(t, 32)
		d.s.SetObserver(obs)
		allocs := testing.AllocsPerRun(40, func() {
			out := d.s.Schedule()
			d.ro.Step = out.Step
			d.s.Update(out, &d.ro)
		})
		assert.Zero(t, allocs, "observer %T", obs)
	}
}
