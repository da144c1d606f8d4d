package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/engine/enginetest"
	"github.com/vserve/vserve/scheduler"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newEngine(t *testing.T, cfg engine.Config, exec *enginetest.FakeExecutor) (*engine.Engine, *enginetest.SimpleScheduler) {
	t.Helper()
	s := &enginetest.SimpleScheduler{MaxSeqs: 8}
	e := engine.New(cfg, s, exec)
	t.Cleanup(func() { require.NoError(t, e.Shutdown(context.Background())) })
	return e, s
}

func req(id string, maxTokens int) *engine.Request {
	return &engine.Request{ID: id, PromptTokenIDs: []int32{1, 2, 3}, Params: scheduler.DefaultSamplingParams(maxTokens), EOSTokenIDs: []int32{2}}
}

func TestGenerateToLength(t *testing.T) {
	e, _ := newEngine(t, engine.Config{}, &enginetest.FakeExecutor{})
	st, err := e.Add(context.Background(), req("a", 5))
	require.NoError(t, err)
	defer st.Close()
	out, err := st.Collect(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []int32{100, 101, 102, 103, 104}, out.TokenIDs)
	assert.Equal(t, scheduler.FinishLength, out.Finish)
	assert.False(t, out.Times.FirstToken.IsZero())
	assert.False(t, out.Times.Scheduled.IsZero())
	_, err = st.Next(context.Background())
	assert.ErrorIs(t, err, io.EOF)
}

func TestStopConditions(t *testing.T) {
	tests := []struct {
		name   string
		params func(*scheduler.SamplingParams)
		want   []int32
		finish scheduler.FinishReason
	}{
		{"stop token id", func(p *scheduler.SamplingParams) { p.StopTokenIDs = []int32{102} }, []int32{100, 101, 102}, scheduler.FinishStop},
		{"min tokens masks stop id", func(p *scheduler.SamplingParams) { p.StopTokenIDs = []int32{100, 102}; p.MinTokens = 2 }, []int32{100, 101, 102}, scheduler.FinishStop},
		{"max tokens", func(p *scheduler.SamplingParams) {}, []int32{100, 101, 102, 103}, scheduler.FinishLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEngine(t, engine.Config{}, &enginetest.FakeExecutor{})
			r := req("x", 4)
			tc.params(&r.Params)
			st, err := e.Add(context.Background(), r)
			require.NoError(t, err)
			defer st.Close()
			out, err := st.Collect(context.Background())
			require.NoError(t, err)
			assert.Equal(t, tc.want, out.TokenIDs)
			assert.Equal(t, tc.finish, out.Finish)
		})
	}
}

func TestHooksSeeEveryStepAndRequest(t *testing.T) {
	var mu sync.Mutex
	var steps []uint64
	starts, ends := map[string]int{}, map[string]engine.RequestEnd{}
	cfg := engine.Config{Hooks: engine.Hooks{
		OnStep: func(r *engine.StepRecord) {
			mu.Lock()
			steps = append(steps, r.Step)
			mu.Unlock()
		},
		OnRequestStart: func(r engine.RequestStart) any {
			mu.Lock()
			defer mu.Unlock()
			starts[r.ID]++
			return "state of " + r.ID
		},
		OnRequestEnd: func(r engine.RequestEnd) { mu.Lock(); ends[r.ID] = r; mu.Unlock() },
	}}
	sched := &observerStateScheduler{SimpleScheduler: &enginetest.SimpleScheduler{MaxSeqs: 8}, states: map[string]any{}}
	e := engine.New(cfg, sched, &enginetest.FakeExecutor{})
	t.Cleanup(func() { require.NoError(t, e.Shutdown(context.Background())) })
	for i := range 3 {
		r := req(fmt.Sprint(i), 3)
		r.TraceHeaders = map[string]string{"traceparent": "x"}
		st, err := e.Add(context.Background(), r)
		require.NoError(t, err)
		_, err = st.Collect(context.Background())
		require.NoError(t, err)
		st.Close()
	}
	require.NoError(t, e.Shutdown(context.Background()))
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, steps)
	for i := 1; i < len(steps); i++ {
		assert.Greater(t, steps[i], steps[i-1], "steps increase")
	}
	assert.Len(t, starts, 3)
	for id, end := range ends {
		assert.Equal(t, 1, starts[id])
		assert.Equal(t, scheduler.FinishLength, end.Reason)
		assert.Equal(t, 3, end.NumOutputTokens)
		assert.Equal(t, "x", end.TraceHeaders["traceparent"])
		assert.Equal(t, "state of "+id, end.ObserverState, "OnRequestEnd gets what OnRequestStart returned")
		assert.Equal(t, "state of "+id, sched.states[id], "the scheduler's request carries it")
	}
	assert.Equal(t, uint64(len(steps)), e.Snapshot().Steps)
}

// observerStateScheduler records the ObserverState of each request added.
type observerStateScheduler struct {
	*enginetest.SimpleScheduler
	states map[string]any // by id; the engine's goroutine writes, the test reads after Shutdown
}

func (s *observerStateScheduler) AddRequest(r *scheduler.Request) error {
	s.states[r.ID] = r.ObserverState
	return s.SimpleScheduler.AddRequest(r)
}

// blockingExec holds every step until released, so tests can act between
// steps deterministically.
type blockingExec struct {
	enginetest.FakeExecutor
	gate chan struct{}
}

func (b *blockingExec) Execute(out *scheduler.Output) (*scheduler.RunnerOutput, error) {
	<-b.gate
	return b.FakeExecutor.Execute(out)
}

func TestAbortEndsRequestAndReleasesState(t *testing.T) {
	ex := &blockingExec{gate: make(chan struct{})}
	s := &enginetest.SimpleScheduler{}
	e := engine.New(engine.Config{}, s, ex)
	defer e.Shutdown(context.Background())
	st, err := e.Add(context.Background(), req("a", 1000))
	require.NoError(t, err)
	ex.gate <- struct{}{} // step 1 runs
	o, err := st.Next(context.Background())
	require.NoError(t, err)
	require.Len(t, o.TokenIDs, 1)
	st.Close()
	close(ex.gate) // let the loop run freely
	out, err := st.Collect(context.Background())
	require.NoError(t, err)
	assert.Equal(t, scheduler.FinishAbort, out.Finish)
	assert.Equal(t, engine.CauseClientDisconnect, out.AbortCause)
	require.NoError(t, e.Shutdown(context.Background()))
	assert.False(t, s.HasUnfinished())
	assert.Zero(t, e.Snapshot().NumActive)
	assert.Zero(t, ex.NumLive(), "the executor dropped the request's state")
}

func TestStopRequestFinishesWithStop(t *testing.T) {
	e, _ := newEngine(t, engine.Config{}, &enginetest.FakeExecutor{})
	st, err := e.Add(context.Background(), req("a", 1<<20))
	require.NoError(t, err)
	defer st.Close()
	_, err = st.Next(context.Background())
	require.NoError(t, err)
	st.Stop()
	out, err := st.Collect(context.Background())
	require.NoError(t, err)
	assert.Equal(t, scheduler.FinishStop, out.Finish)
	assert.Equal(t, engine.CauseStopString, out.AbortCause)
}

// TestStopCheckEndsAtTheStoppingToken: a request whose StopCheck fires
// ends with finish reason stop at that token, in its stream, in
// RequestEnd and in the steps' outputs alike; a stop on the last token
// wins over length.
func TestStopCheckEndsAtTheStoppingToken(t *testing.T) {
	none := scheduler.FinishNone
	tests := []struct {
		name       string
		maxTokens  int
		stopTokens []int32 // the scheduler's stop_token_ids
		stopAt     func(tok int32, end scheduler.FinishReason) bool
		want       []int32
		finish     scheduler.FinishReason
		cause      string
		ends       []scheduler.FinishReason // the end argument of each call
	}{
		{"mid-generation", 8, nil, func(tok int32, _ scheduler.FinishReason) bool { return tok == 102 },
			[]int32{100, 101, 102}, scheduler.FinishStop, engine.CauseStopString, []scheduler.FinishReason{none, none, none}},
		{"on the last token", 3, nil, func(_ int32, end scheduler.FinishReason) bool { return end != none },
			[]int32{100, 101, 102}, scheduler.FinishStop, engine.CauseStopString, []scheduler.FinishReason{none, none, scheduler.FinishLength}},
		{"never", 3, nil, func(int32, scheduler.FinishReason) bool { return false },
			[]int32{100, 101, 102}, scheduler.FinishLength, "", []scheduler.FinishReason{none, none, scheduler.FinishLength}},
		{"on a stop token: the scheduler's stop", 8, []int32{101}, func(_ int32, end scheduler.FinishReason) bool { return end != none },
			[]int32{100, 101}, scheduler.FinishStop, "", []scheduler.FinishReason{none, scheduler.FinishStop}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var end engine.RequestEnd
			stepTokens := 0
			cfg := engine.Config{Hooks: engine.Hooks{
				OnStep: func(r *engine.StepRecord) {
					mu.Lock()
					defer mu.Unlock()
					for _, o := range r.Outputs {
						stepTokens += len(o.NewTokenIDs)
					}
				},
				OnRequestEnd: func(r engine.RequestEnd) { mu.Lock(); end = r; mu.Unlock() },
			}}
			e, s := newEngine(t, cfg, &enginetest.FakeExecutor{})
			var ends []scheduler.FinishReason // written on the engine goroutine only
			r := req("a", tc.maxTokens)
			r.Params.StopTokenIDs = tc.stopTokens
			r.StopCheck = func(tok int32, end scheduler.FinishReason) bool {
				ends = append(ends, end)
				return tc.stopAt(tok, end)
			}
			st, err := e.Add(context.Background(), r)
			require.NoError(t, err)
			out, err := st.Collect(context.Background())
			require.NoError(t, err)
			st.Close()
			require.NoError(t, e.Shutdown(context.Background()))
			assert.Equal(t, tc.want, out.TokenIDs)
			assert.Equal(t, tc.finish, out.Finish)
			assert.Equal(t, tc.cause, out.AbortCause)
			assert.Equal(t, tc.ends, ends)
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, tc.finish, end.Reason)
			assert.Equal(t, len(tc.want), end.NumOutputTokens)
			assert.Equal(t, len(tc.want), stepTokens, "no token past the stop is generated")
			assert.False(t, s.HasUnfinished())
		})
	}
}

// TestStopCheckPanicFailsItsRequestOnly: a StopCheck that panics ends its
// request with an error; the engine goes on serving.
func TestStopCheckPanicFailsItsRequestOnly(t *testing.T) {
	e, s := newEngine(t, engine.Config{}, &enginetest.FakeExecutor{})
	bad := req("bad", 5)
	bad.StopCheck = func(int32, scheduler.FinishReason) bool { panic("stop matcher bug") }
	st, err := e.Add(context.Background(), bad)
	require.NoError(t, err)
	out, err := st.Collect(context.Background())
	require.NoError(t, err)
	st.Close()
	assert.Equal(t, scheduler.FinishError, out.Finish)
	require.ErrorContains(t, out.Err, "stop matcher bug")
	assert.Empty(t, out.TokenIDs)
	good, err := e.Add(context.Background(), req("good", 3))
	require.NoError(t, err)
	out, err = good.Collect(context.Background())
	require.NoError(t, err)
	good.Close()
	assert.Equal(t, scheduler.FinishLength, out.Finish)
	require.NoError(t, e.Shutdown(context.Background()))
	assert.False(t, s.HasUnfinished())
}

// TestLastTokenComesWithTheEnd: however the reader interleaves with the
// loop, the output that holds a request's last token also holds its finish
// reason (a server tells a stop token by it).
func TestLastTokenComesWithTheEnd(t *testing.T) {
	for range 50 {
		e, _ := newEngine(t, engine.Config{}, &enginetest.FakeExecutor{})
		r := req("a", 4)
		r.Params.StopTokenIDs = []int32{103}
		st, err := e.Add(context.Background(), r)
		require.NoError(t, err)
		var tokens int
		for {
			o, err := st.Next(context.Background())
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			tokens += len(o.TokenIDs)
			if tokens == 4 {
				require.True(t, o.Finished(), "the last token arrives with the end")
				assert.Equal(t, scheduler.FinishStop, o.Finish)
			}
			if o.Finished() {
				require.NotEmpty(t, o.TokenIDs, "the end arrives with the last token")
			}
		}
		assert.Equal(t, 4, tokens)
		st.Close()
		require.NoError(t, e.Shutdown(context.Background()))
	}
}

func TestDeadlineAborts(t *testing.T) {
	e, _ := newEngine(t, engine.Config{}, &enginetest.FakeExecutor{})
	r := req("a", 1<<30)
	r.Deadline = time.Now() // already passed: aborted at the next iteration
	st, err := e.Add(context.Background(), r)
	require.NoError(t, err)
	defer st.Close()
	out, err := st.Collect(context.Background())
	require.NoError(t, err)
	assert.Equal(t, scheduler.FinishAbort, out.Finish)
	assert.Equal(t, engine.CauseTimeout, out.AbortCause)
}

func TestSlowReaderDoesNotBlockLoop(t *testing.T) {
	e, _ := newEngine(t, engine.Config{}, &enginetest.FakeExecutor{})
	slow, err := e.Add(context.Background(), req("slow", 500))
	require.NoError(t, err)
	defer slow.Close()
	fast, err := e.Add(context.Background(), req("fast", 50))
	require.NoError(t, err)
	defer fast.Close()
	out, err := fast.Collect(context.Background())
	require.NoError(t, err)
	assert.Len(t, out.TokenIDs, 50)
	// The slow stream was never read; it coalesced everything.
	all, err := slow.Collect(context.Background())
	require.NoError(t, err)
	assert.Len(t, all.TokenIDs, 500)
}

func TestExecutorErrorFailsBatch(t *testing.T) {
	boom := errors.New("boom")
	ex := &enginetest.FakeExecutor{Fail: func(step uint64) error {
		if step == 2 {
			return boom
		}
		return nil
	}}
	e, s := newEngine(t, engine.Config{}, ex)
	st, err := e.Add(context.Background(), req("a", 10))
	require.NoError(t, err)
	defer st.Close()
	out, err := st.Collect(context.Background())
	require.NoError(t, err)
	assert.Equal(t, scheduler.FinishError, out.Finish)
	assert.ErrorIs(t, out.Err, boom)
	require.NoError(t, e.Shutdown(context.Background()))
	assert.False(t, s.HasUnfinished())
}

func TestAdmission(t *testing.T) {
	ex := &blockingExec{gate: make(chan struct{})}
	s := &enginetest.SimpleScheduler{MaxSeqs: 1}
	e := engine.New(engine.Config{MaxQueuedRequests: 2, MaxQueuedTokens: 5}, s, ex)
	ctx := context.Background()
	// A first request holds the loop in its first step (the executor waits
	// at the gate), so that the requests added next stay queued: otherwise
	// the loop could schedule one of them, which leaves the queue, before
	// the next is added.
	blocker, err := e.Add(ctx, req("blocker", 1))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return e.Snapshot().NumQueued == 0 }, time.Minute, time.Millisecond, "the blocker was scheduled")
	_, err = e.Add(ctx, &engine.Request{ID: "bad"})
	assert.ErrorIs(t, err, engine.ErrInvalid)
	a, err := e.Add(ctx, req("a", 3)) // 3 tokens queued
	require.NoError(t, err)
	_, err = e.Add(ctx, req("a", 3))
	assert.ErrorIs(t, err, engine.ErrDuplicateID)
	_, err = e.Add(ctx, req("b", 3)) // 6 tokens > 5
	assert.ErrorIs(t, err, engine.ErrQueueFull)
	small := req("c", 3)
	small.PromptTokenIDs = []int32{1, 2}
	c, err := e.Add(ctx, small) // 5 tokens, 2 requests
	require.NoError(t, err)
	_, err = e.Add(ctx, &engine.Request{ID: "d", PromptTokenIDs: []int32{1}, Params: scheduler.DefaultSamplingParams(1)})
	assert.ErrorIs(t, err, engine.ErrQueueFull, "request bound")
	close(ex.gate)
	for _, st := range []*engine.Stream{blocker, a, c} {
		_, err := st.Collect(ctx)
		require.NoError(t, err)
		st.Close()
	}
	snap := e.Snapshot()
	assert.Zero(t, snap.NumQueued)
	assert.Zero(t, snap.NumQueuedTokens)
	require.NoError(t, e.Shutdown(ctx))
	_, err = e.Add(ctx, req("late", 1))
	assert.ErrorIs(t, err, engine.ErrShuttingDown)
}

// TestAddAllAdmitsAllOrNone: a group of requests (one API request's
// choices) is admitted whole or not at all; a refused group leaves no
// request, id or queue room behind, and one larger than the queue bound is
// refused as such.
func TestAddAllAdmitsAllOrNone(t *testing.T) {
	ex := &blockingExec{gate: make(chan struct{})}
	var ends atomic.Int64
	e := engine.New(engine.Config{MaxQueuedRequests: 3,
		Hooks: engine.Hooks{OnRequestEnd: func(engine.RequestEnd) { ends.Add(1) }}}, &enginetest.SimpleScheduler{MaxSeqs: 1}, ex)
	ctx := context.Background()
	blocker, err := e.Add(ctx, req("blocker", 1)) // holds the loop in its first step
	require.NoError(t, err)
	require.Eventually(t, func() bool { return e.Snapshot().NumQueued == 0 }, time.Minute, time.Millisecond, "the blocker was scheduled")
	two, err := e.AddAll(ctx, []*engine.Request{req("a0", 1), req("a1", 1)})
	require.NoError(t, err)
	require.Len(t, two, 2)
	_, err = e.AddAll(ctx, []*engine.Request{req("b0", 1), req("b1", 1)})
	assert.ErrorIs(t, err, engine.ErrQueueFull, "2 queued + 2 > 3")
	_, err = e.AddAll(ctx, []*engine.Request{req("c0", 1), req("c1", 1), req("c2", 1), req("c3", 1)})
	assert.ErrorIs(t, err, engine.ErrGroupTooLarge)
	_, err = e.AddAll(ctx, []*engine.Request{req("d", 1), req("d", 1)})
	assert.ErrorIs(t, err, engine.ErrDuplicateID)
	assert.Equal(t, 2, e.Snapshot().NumQueued, "refused groups took no queue room")
	one, err := e.AddAll(ctx, []*engine.Request{req("b0", 1)}) // its id was not kept by the refused group
	require.NoError(t, err)
	close(ex.gate)
	for _, st := range append(append([]*engine.Stream{blocker}, two...), one...) {
		_, err := st.Collect(ctx)
		require.NoError(t, err)
		st.Close()
	}
	require.NoError(t, e.Shutdown(ctx))
	assert.Equal(t, int64(4), ends.Load(), "only admitted requests ever ended")
}

func TestShutdownGraceAbortsInFlight(t *testing.T) {
	s := &enginetest.SimpleScheduler{}
	e := engine.New(engine.Config{}, s, &enginetest.FakeExecutor{})
	st, err := e.Add(context.Background(), req("long", 1<<30))
	require.NoError(t, err)
	defer st.Close()
	_, err = st.Next(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace at all
	assert.ErrorIs(t, e.Shutdown(ctx), context.Canceled)
	out, err := st.Collect(context.Background())
	require.NoError(t, err)
	assert.Equal(t, scheduler.FinishAbort, out.Finish)
	assert.Equal(t, engine.CauseShutdown, out.AbortCause)
	assert.Zero(t, s.Stats().NumRunning+s.Stats().NumWaiting)
	assert.Zero(t, e.Snapshot().NumActive)
	require.NoError(t, e.Shutdown(context.Background()), "second call returns at once")
}

func TestShutdownLetsRequestsFinish(t *testing.T) {
	e := engine.New(engine.Config{}, &enginetest.SimpleScheduler{}, &enginetest.FakeExecutor{})
	st, err := e.Add(context.Background(), req("a", 20))
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, e.Shutdown(context.Background()))
	out, err := st.Collect(context.Background())
	require.NoError(t, err)
	assert.Equal(t, scheduler.FinishLength, out.Finish)
	assert.Len(t, out.TokenIDs, 20)
}

func TestSharedNotifyMultiplexes(t *testing.T) {
	e, _ := newEngine(t, engine.Config{}, &enginetest.FakeExecutor{})
	notify := make(chan struct{}, 1)
	var streams []*engine.Stream
	for i := range 4 {
		r := req(fmt.Sprint(i), 10+i)
		r.Notify = notify
		st, err := e.Add(context.Background(), r)
		require.NoError(t, err)
		defer st.Close()
		streams = append(streams, st)
	}
	counts := make([]int, len(streams))
	open := len(streams)
	for open > 0 {
		progressed := false
		for i, st := range streams {
			o, ok, err := st.TryNext()
			if err == io.EOF || !ok {
				continue
			}
			progressed = true
			counts[i] += len(o.TokenIDs)
			if o.Finished() {
				open--
			}
		}
		if !progressed {
			<-notify
		}
	}
	assert.Equal(t, []int{10, 11, 12, 13}, counts)
}

var _ engine.Scheduler = (*scheduler.Scheduler)(nil)

type panicExec struct{}

func (panicExec) Execute(*scheduler.Output) (*scheduler.RunnerOutput, error) { panic("kernel bug") }

func TestExecutorPanicFailsBatchNotServer(t *testing.T) {
	e := engine.New(engine.Config{}, &enginetest.SimpleScheduler{}, panicExec{})
	defer e.Shutdown(context.Background())
	st, err := e.Add(context.Background(), req("a", 3))
	require.NoError(t, err)
	defer st.Close()
	out, err := st.Collect(context.Background())
	require.NoError(t, err)
	assert.Equal(t, scheduler.FinishError, out.Finish)
	assert.ErrorContains(t, out.Err, "kernel bug")
}

// TestSnapshotAtRequestEndShowsItsResourcesFreed: when a request is no
// longer active, the published statistics already show it gone from the
// scheduler, on every path that ends it, so waiting for NumActive == 0
// and then reading Stats is never stale.
func TestSnapshotAtRequestEndShowsItsResourcesFreed(t *testing.T) {
	tests := []struct {
		name string
		fail func(step uint64) error
		end  func(e *engine.Engine, st *engine.Stream)
	}{
		{"length", nil, func(*engine.Engine, *engine.Stream) {}},
		{"abort", nil, func(_ *engine.Engine, st *engine.Stream) { st.Close() }},
		{"executor error", func(step uint64) error {
			if step == 3 {
				return errors.New("boom")
			}
			return nil
		}, func(*engine.Engine, *engine.Stream) {}},
		{"shutdown", nil, func(e *engine.Engine, _ *engine.Stream) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_ = e.Shutdown(ctx)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e *engine.Engine
			atEnd := make(chan engine.Snapshot, 1)
			endStats := make(chan scheduler.Stats, 1)
			cfg := engine.Config{Hooks: engine.Hooks{OnRequestEnd: func(re engine.RequestEnd) {
				atEnd <- e.Snapshot()
				endStats <- re.Stats
			}}}
			e = engine.New(cfg, &enginetest.SimpleScheduler{}, &enginetest.FakeExecutor{Fail: tc.fail})
			defer e.Shutdown(context.Background())
			maxTokens := 5
			if tc.name == "abort" || tc.name == "shutdown" {
				maxTokens = 1 << 30
			}
			st, err := e.Add(context.Background(), req("a", maxTokens))
			require.NoError(t, err)
			defer st.Close()
			_, err = st.Next(context.Background())
			require.NoError(t, err)
			tc.end(e, st)
			snap := <-atEnd
			assert.Zero(t, snap.NumActive)
			assert.Zero(t, snap.Stats.NumRunning+snap.Stats.NumWaiting, "stats published before the request stopped being active")
			assert.Equal(t, snap.Stats, <-endStats, "RequestEnd carries the same statistics")
		})
	}
}
