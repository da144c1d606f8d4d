package scheduler

import (
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testConfig() Config {
	return Config{
		MaxModelLen:         128,
		MaxNumBatchedTokens: 64,
		MaxNumSeqs:          8,
		BlockSize:           4,
		NumBlocks:           64,
		EnablePrefixCaching: true,
	}
}

func newTestScheduler(t testing.TB, cfg Config) (*Scheduler, *fakeRunner) {
	t.Helper()
	s, err := New(cfg)
	require.NoError(t, err)
	return s, newFakeRunner(s.Config().BlockSize)
}

func tokens(n int, base int32) []int32 {
	t := make([]int32, n)
	for i := range t {
		t[i] = base + int32(i)
	}
	return t
}

func add(t testing.TB, s *Scheduler, id string, prompt []int32, maxTokens int, mod ...func(*Request)) {
	t.Helper()
	r := &Request{ID: id, PromptTokenIDs: prompt, Params: DefaultSamplingParams(maxTokens), EOSTokenIDs: []int32{2}}
	for _, m := range mod {
		m(r)
	}
	require.NoError(t, s.AddRequest(r))
}

// step runs one Schedule / execute / Update round and checks invariants.
func step(t testing.TB, s *Scheduler, f *fakeRunner) (*Output, []RequestOutput, Stats) {
	t.Helper()
	out := s.Schedule()
	ro := f.execute(out)
	f.check(t)
	deltas, stats := s.Update(out, ro)
	require.NoError(t, checkInvariants(s))
	return out, deltas, stats
}

func TestConfigDefaultsAndValidation(t *testing.T) {
	s, err := New(Config{MaxModelLen: 100, NumBlocks: 10})
	require.NoError(t, err)
	c := s.Config()
	assert.Equal(t, DefaultBlockSize, c.BlockSize)
	assert.Equal(t, DefaultMaxNumBatchedTokens, c.MaxNumBatchedTokens)
	assert.Equal(t, DefaultMaxNumSeqs, c.MaxNumSeqs)
	assert.Equal(t, DefaultMaxSkips, c.MaxSkips)

	s, err = New(Config{MaxModelLen: 100, NumBlocks: 10, MaxNumBatchedTokens: 64})
	require.NoError(t, err)
	assert.Equal(t, 64, s.Config().MaxNumSeqs, "MaxNumSeqs defaults to at most the budget")

	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no max model len", Config{NumBlocks: 10}},
		{"negative block size", Config{MaxModelLen: 16, NumBlocks: 10, BlockSize: -1}},
		{"too few blocks", Config{MaxModelLen: 16, NumBlocks: 1}},
		{"negative budget", Config{MaxModelLen: 16, NumBlocks: 10, MaxNumBatchedTokens: -5}},
		{"negative max seqs", Config{MaxModelLen: 16, NumBlocks: 10, MaxNumSeqs: -1}},
		{"budget below max seqs", Config{MaxModelLen: 16, NumBlocks: 10, MaxNumSeqs: 20, MaxNumBatchedTokens: 10}},
		{"negative threshold", Config{MaxModelLen: 16, NumBlocks: 10, LongPrefillTokenThreshold: -1}},
		{"unknown policy", Config{MaxModelLen: 16, NumBlocks: 10, Policy: 9}},
		{"unknown hash", Config{MaxModelLen: 16, NumBlocks: 10, HashAlgo: 9}},
		{"pool smaller than one request", Config{MaxModelLen: 100, NumBlocks: 7, BlockSize: 16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			assert.Error(t, err)
		})
	}
}

func TestAddRequestValidation(t *testing.T) {
	s, _ := newTestScheduler(t, testConfig())
	add(t, s, "live", tokens(4, 10), 4)
	ok := func(r *Request) *Request { return r }
	base := func() *Request {
		return &Request{ID: "x", PromptTokenIDs: tokens(4, 10), Params: DefaultSamplingParams(4)}
	}
	for _, tc := range []struct {
		name string
		req  *Request
		want error
	}{
		{"nil", nil, ErrInvalidRequest},
		{"empty id", func() *Request { r := base(); r.ID = ""; return r }(), ErrInvalidRequest},
		{"empty prompt", func() *Request { r := base(); r.PromptTokenIDs = nil; return r }(), ErrInvalidRequest},
		{"negative token", func() *Request { r := base(); r.PromptTokenIDs[1] = -3; return r }(), ErrInvalidRequest},
		{"zero max tokens", func() *Request { r := base(); r.Params.MaxTokens = 0; return r }(), ErrInvalidRequest},
		{"min tokens over max", func() *Request { r := base(); r.Params.MinTokens = 5; return r }(), ErrInvalidRequest},
		{"negative min tokens", func() *Request { r := base(); r.Params.MinTokens = -1; return r }(), ErrInvalidRequest},
		{"too long", func() *Request { r := base(); r.Params.MaxTokens = 125; return r }(), ErrContextLength},
		{"duplicate live id", func() *Request { r := base(); r.ID = "live"; return r }(), ErrDuplicateID},
		{"exactly max model len", func() *Request { r := base(); r.Params.MaxTokens = 124; return r }(), nil},
		{"valid", ok(base()), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.AddRequest(tc.req)
			if tc.want == nil {
				assert.NoError(t, err)
				assert.True(t, s.Abort(tc.req.ID, FinishAbort))
				return
			}
			assert.True(t, errors.Is(err, tc.want), "got %v", err)
		})
	}
}

func TestAddRequestCopiesInputs(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	prompt := tokens(5, 10)
	stop := []int32{77}
	r := &Request{ID: "a", PromptTokenIDs: prompt, Params: DefaultSamplingParams(3), EOSTokenIDs: []int32{2}}
	r.Params.StopTokenIDs = stop
	require.NoError(t, s.AddRequest(r))
	prompt[0], stop[0], r.EOSTokenIDs[0] = 99, 1005, 1005 // the first sampled token is 1005
	out, deltas, _ := step(t, s, f)
	assert.Equal(t, int32(10), out.NewRequests[0].PromptTokenIDs[0])
	require.Len(t, deltas, 1)
	assert.Equal(t, FinishNone, deltas[0].FinishReason, "later changes to the caller's slices do not matter")
}

func TestStepCounter(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	assert.Equal(t, uint64(0), s.Step())
	assert.Equal(t, uint64(0), s.Stats().Step)
	for want := uint64(1); want <= 3; want++ {
		out := s.Schedule() // empty schedules count
		assert.Equal(t, want, out.Step)
		assert.Equal(t, want, s.Step())
		assert.Zero(t, out.TotalNumScheduledTokens)
		_, st := s.Update(out, &RunnerOutput{Step: out.Step})
		assert.Equal(t, want, st.Step)
	}
	add(t, s, "a", tokens(6, 10), 2)
	out, _, _ := step(t, s, f)
	assert.Equal(t, uint64(4), out.Step)
	require.True(t, s.Abort("a", FinishAbort))
	assert.True(t, s.ResetPrefixCache())
	assert.Equal(t, uint64(5), s.Schedule().Step, "a prefix-cache reset does not reset the counter")

	other, _ := newTestScheduler(t, testConfig())
	assert.Equal(t, uint64(1), other.Schedule().Step, "each scheduler has its own counter")
}

func TestUpdateRejectsMismatchedStep(t *testing.T) {
	s, _ := newTestScheduler(t, testConfig())
	out := s.Schedule()
	assert.Panics(t, func() { s.Update(out, &RunnerOutput{Step: out.Step + 1}) })
	assert.Panics(t, func() { s.Update(&Output{Step: out.Step}, nil) }, "foreign output")
}

func TestChunkedPrefill(t *testing.T) {
	cfg := testConfig()
	cfg.MaxNumBatchedTokens = 16
	s, f := newTestScheduler(t, cfg)
	add(t, s, "a", tokens(50, 10), 3)
	wantComputed := []int{0, 16, 32, 48}
	wantScheduled := []int{16, 16, 16, 2}
	for i := range wantComputed {
		out, deltas, _ := step(t, s, f)
		assert.Equal(t, wantScheduled[i], out.NumScheduledTokens["a"], "step %d", out.Step)
		if i == 0 {
			require.Len(t, out.NewRequests, 1)
			assert.Equal(t, wantComputed[i], out.NewRequests[0].NumComputedTokens)
			assert.Len(t, out.NewRequests[0].BlockIDs, 4)
		} else {
			require.Len(t, out.CachedRequests, 1)
			assert.Equal(t, wantComputed[i], out.CachedRequests[0].NumComputedTokens)
		}
		if i < len(wantComputed)-1 {
			assert.Empty(t, deltas, "a partial prefill samples nothing")
			v, _ := s.Request("a")
			assert.Equal(t, PhasePrefill, v.Phase())
			assert.Equal(t, wantComputed[i+1], v.PrefillHighWater())
		} else {
			require.Len(t, deltas, 1)
			assert.Len(t, deltas[0].NewTokenIDs, 1)
		}
	}
	out, deltas, _ := step(t, s, f)
	assert.Equal(t, 1, out.NumScheduledTokens["a"])
	assert.Equal(t, 50, out.CachedRequests[0].NumComputedTokens)
	require.Len(t, deltas, 1)
	v, _ := s.Request("a")
	assert.Equal(t, PhaseDecode, v.Phase())
	assert.Equal(t, 50, v.PrefillHighWater())
}

func TestBudgetIsSharedRunningFirst(t *testing.T) {
	cfg := testConfig()
	cfg.MaxNumBatchedTokens = 16
	s, f := newTestScheduler(t, cfg)
	add(t, s, "a", tokens(10, 10), 5)
	add(t, s, "b", tokens(10, 100), 5)
	out, _, _ := step(t, s, f)
	assert.Equal(t, map[string]int{"a": 10, "b": 6}, out.NumScheduledTokens, "b's prompt is chunked")
	add(t, s, "c", tokens(20, 200), 5)
	out, _, _ = step(t, s, f)
	assert.Equal(t, map[string]int{"a": 1, "b": 4, "c": 11}, out.NumScheduledTokens, "running first, then waiting")
	assert.Equal(t, 16, out.TotalNumScheduledTokens)
}

func TestLongPrefillThreshold(t *testing.T) {
	cfg := testConfig()
	cfg.MaxNumBatchedTokens = 32
	cfg.LongPrefillTokenThreshold = 8
	s, f := newTestScheduler(t, cfg)
	add(t, s, "a", tokens(20, 10), 5)
	add(t, s, "b", tokens(20, 100), 5)
	out, _, _ := step(t, s, f)
	assert.Equal(t, map[string]int{"a": 8, "b": 8}, out.NumScheduledTokens)
	out, _, _ = step(t, s, f)
	assert.Equal(t, map[string]int{"a": 8, "b": 8}, out.NumScheduledTokens)
	out, _, _ = step(t, s, f)
	assert.Equal(t, map[string]int{"a": 4, "b": 4}, out.NumScheduledTokens)
}

func TestMaxNumSeqs(t *testing.T) {
	cfg := testConfig()
	cfg.MaxNumSeqs = 2
	s, f := newTestScheduler(t, cfg)
	add(t, s, "a", tokens(4, 10), 1)
	add(t, s, "b", tokens(4, 20), 3)
	add(t, s, "c", tokens(4, 30), 3)
	out, deltas, st := step(t, s, f)
	assert.Len(t, out.NewRequests, 2)
	assert.Equal(t, 1, st.NumWaiting)
	require.Len(t, deltas, 2)
	assert.Equal(t, FinishLength, deltas[0].FinishReason, "a ends after its only token")
	out, _, _ = step(t, s, f)
	require.Len(t, out.NewRequests, 1)
	assert.Equal(t, "c", out.NewRequests[0].ID)
	assert.Equal(t, []string{"a"}, out.FinishedRequestIDs)
}

func TestFCFSAdmissionKeepsQueueOrder(t *testing.T) {
	cfg := testConfig()
	cfg.MaxNumSeqs = 3
	s, f := newTestScheduler(t, cfg)
	for i := 0; i < 8; i++ {
		add(t, s, string(rune('a'+i)), tokens(2, int32(10*i)), 1)
	}
	var order []string
	for s.HasUnfinished() {
		out, _, _ := step(t, s, f)
		for _, nr := range out.NewRequests {
			order = append(order, nr.ID)
		}
	}
	assert.Equal(t, []string{"a", "b", "c", "d", "e", "f", "g", "h"}, order)
}

// A request's up-front memory must not scale with max_tokens (which
// defaults to max_model_len - prompt): queued requests at long contexts
// would otherwise cost O(max_model_len) each.
func TestAddRequestReservesBoundedMemory(t *testing.T) {
	cfg := Config{MaxModelLen: 1 << 17, BlockSize: 16, NumBlocks: 1<<13 + 1, MaxNumBatchedTokens: 2048, MaxNumSeqs: 4}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	prompt := []int32{1, 2, 3}
	params := DefaultSamplingParams(cfg.MaxModelLen - len(prompt))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 100; i++ {
		if err := s.AddRequest(&Request{ID: fmt.Sprint(i), PromptTokenIDs: prompt, Params: params}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	perRequest := (after.TotalAlloc - before.TotalAlloc) / 100
	// Reserving the whole 131072-token context would cost over 512 KiB per
	// request (tokens alone); the bound keeps it near 16 KiB + the table.
	if perRequest > 256<<10 {
		t.Fatalf("AddRequest allocates %d bytes per request at max_tokens %d", perRequest, params.MaxTokens)
	}
}

// TestSameStepAdmissionsShareBlocks: as in vLLM, requests admitted in one
// step hit the full blocks that an earlier admission of the same step will
// compute; the fake runner checks that every K/V read was written.
func TestSameStepAdmissionsShareBlocks(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	prompt := tokens(13, 10)
	for _, id := range []string{"a", "b", "c"} {
		add(t, s, id, prompt, 3)
	}
	out, _, st := step(t, s, f)
	require.Len(t, out.NewRequests, 3)
	assert.Equal(t, 0, out.NewRequests[0].NumComputedTokens)
	for _, nr := range out.NewRequests[1:] {
		assert.Equal(t, 12, nr.NumComputedTokens, "%s hits a's three full blocks", nr.ID)
		assert.Equal(t, 1, out.NumScheduledTokens[nr.ID])
	}
	assert.Equal(t, 4+1+1, s.kv.NumHeld())
	assert.Equal(t, uint64(24), st.PrefixCacheHits)
	drain(t, s, f)
}
