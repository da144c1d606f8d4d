package scheduler

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/kvcache"
)

// scripted returns a sampler that emits script[i] as the i-th output.
func scripted(nPrompt int, script ...int32) func(string, []int32) int32 {
	return func(_ string, toks []int32) int32 {
		i := len(toks) - nPrompt
		if i < len(script) {
			return script[i]
		}
		return 500
	}
}

func TestStopConditions(t *testing.T) {
	const eos = 2
	for _, tc := range []struct {
		name       string
		maxTokens  int
		minTokens  int
		ignoreEOS  bool
		stopIDs    []int32
		maxLen     int
		script     []int32
		wantTokens []int32
		want       FinishReason
	}{
		{"eos", 10, 0, false, nil, 0, []int32{5, 6, eos, 7}, []int32{5, 6, eos}, FinishStop},
		{"eos ignored", 4, 0, true, nil, 0, []int32{5, eos, 6, 7, 8}, []int32{5, eos, 6, 7}, FinishLength},
		{"min tokens masks eos", 10, 3, false, nil, 0, []int32{eos, eos, eos, 9}, []int32{eos, eos, eos}, FinishStop},
		{"min tokens masks stop ids", 10, 2, false, []int32{42}, 0, []int32{42, 1, 42}, []int32{42, 1, 42}, FinishStop},
		{"stop token id", 10, 0, false, []int32{42, 43}, 0, []int32{5, 43, 6}, []int32{5, 43}, FinishStop},
		{"max tokens", 3, 0, false, nil, 0, []int32{5, 6, 7, 8}, []int32{5, 6, 7}, FinishLength},
		{"eos on the last allowed token is stop", 3, 0, false, nil, 0, []int32{5, 6, eos}, []int32{5, 6, eos}, FinishStop},
		{"max model len", 4, 0, false, nil, 8, []int32{5, 6, 7, 8, 9}, []int32{5, 6, 7, 8}, FinishLength},
		{"min tokens equal max tokens", 3, 3, false, nil, 0, []int32{eos, eos, eos}, []int32{eos, eos, eos}, FinishStop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.maxLen > 0 {
				cfg.MaxModelLen = tc.maxLen
			}
			s, f := newTestScheduler(t, cfg)
			f.sample = scripted(4, tc.script...)
			add(t, s, "r", tokens(4, 10), tc.maxTokens, func(r *Request) {
				r.Params.MinTokens = tc.minTokens
				r.Params.IgnoreEOS = tc.ignoreEOS
				r.Params.StopTokenIDs = tc.stopIDs
			})
			var got []int32
			var reason FinishReason
			for s.HasUnfinished() {
				_, deltas, _ := step(t, s, f)
				for _, d := range deltas {
					got = append(got, d.NewTokenIDs...)
					reason = d.FinishReason
				}
			}
			assert.Equal(t, tc.wantTokens, got)
			assert.Equal(t, tc.want, reason)
		})
	}
}

func TestMultipleSampledTokensStopMidway(t *testing.T) {
	s, _ := newTestScheduler(t, testConfig())
	add(t, s, "r", tokens(4, 10), 10)
	out := s.Schedule()
	deltas, _ := s.Update(out, &RunnerOutput{Step: out.Step, ReqIDs: []string{"r"}, SampledTokenIDs: [][]int32{{5, 2, 7}}})
	require.Len(t, deltas, 1)
	assert.Equal(t, []int32{5, 2}, deltas[0].NewTokenIDs, "tokens after the stop are dropped")
	assert.Equal(t, FinishStop, deltas[0].FinishReason)
	assert.False(t, s.HasUnfinished())
}

func TestUpdateIgnoresStaleAndBogusOutputs(t *testing.T) {
	cfg := testConfig()
	cfg.MaxNumBatchedTokens = 8
	s, _ := newTestScheduler(t, cfg)
	add(t, s, "long", tokens(12, 10), 5) // partial prefill this step
	add(t, s, "gone", tokens(2, 100), 5)
	out := s.Schedule()
	require.Equal(t, map[string]int{"long": 8}, out.NumScheduledTokens)
	deltas, _ := s.Update(out, &RunnerOutput{Step: out.Step,
		ReqIDs:          []string{"long", "unknown", "gone"},
		SampledTokenIDs: [][]int32{{5}, {6}, {7}},
	})
	assert.Empty(t, deltas, "no token for a partial chunk, an unknown id or an unscheduled request")
	v, _ := s.Request("long")
	assert.Equal(t, 0, v.NumOutputTokens())

	out = s.Schedule()
	require.Equal(t, map[string]int{"long": 4, "gone": 2}, out.NumScheduledTokens)
	require.True(t, s.Abort("gone", FinishAbort))
	deltas, _ = s.Update(out, &RunnerOutput{Step: out.Step,
		ReqIDs:          []string{"gone", "long"},
		SampledTokenIDs: [][]int32{{7}, {8}},
	})
	require.Len(t, deltas, 1, "the aborted request's token is ignored")
	assert.Equal(t, "long", deltas[0].ID)
	assert.Equal(t, out.Step, deltas[0].Step)
}

func TestNoTokenBackMeansRecomputeLastToken(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	add(t, s, "r", tokens(6, 10), 5)
	out := s.Schedule()
	_, _ = s.Update(out, &RunnerOutput{Step: out.Step}) // the runner sampled nothing
	v, _ := s.Request("r")
	assert.Equal(t, 5, v.NumComputedTokens())
	f.reqs["r"] = &runReq{tokens: tokens(6, 10), blocks: append([]int32(nil), out.NewRequests[0].BlockIDs...)}
	prefix := prefixHashes(tokens(6, 10), 6)
	for p := 0; p < 6; p++ {
		f.slot(out.NewRequests[0].BlockIDs[p/4], p%4, kvSlot{int32(10 + p), p, prefix[p], true})
	}
	out2, deltas, _ := step(t, s, f)
	assert.Equal(t, 1, out2.NumScheduledTokens["r"])
	require.Len(t, deltas, 1)
}

func TestAbort(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	add(t, s, "run", tokens(9, 10), 10)
	step(t, s, f)
	add(t, s, "wait", tokens(9, 100), 10)
	held := s.kv.NumHeld()
	require.Equal(t, 3, held)

	assert.True(t, s.Abort("run", FinishAbort))
	assert.Equal(t, 0, s.kv.NumHeld(), "blocks are freed at once")
	assert.True(t, s.Abort("wait", FinishStop))
	assert.False(t, s.Abort("wait", FinishAbort), "already finished")
	assert.False(t, s.Abort("nope", FinishAbort))
	assert.False(t, s.HasUnfinished())
	require.NoError(t, checkInvariants(s))
	out, _, _ := step(t, s, f)
	assert.Equal(t, []string{"run", "wait"}, out.FinishedRequestIDs)
	assert.Zero(t, out.TotalNumScheduledTokens)
	out, _, _ = step(t, s, f)
	assert.Empty(t, out.FinishedRequestIDs, "reported once")
	// The id can be used again.
	add(t, s, "run", tokens(3, 10), 1)
	drain(t, s, f)
}

func TestPriorityAdmissionOrder(t *testing.T) {
	cfg := testConfig()
	cfg.Policy = PolicyPriority
	cfg.MaxNumSeqs = 1
	cfg.MaxNumBatchedTokens = 8
	s, f := newTestScheduler(t, cfg)
	for _, r := range []struct {
		id   string
		prio int
	}{{"p5", 5}, {"p1", 1}, {"p3a", 3}, {"p3b", 3}, {"p0", 0}} {
		add(t, s, r.id, tokens(3, 10), 1, func(q *Request) { q.Priority = r.prio })
	}
	var order []string
	for s.HasUnfinished() {
		out, _, _ := step(t, s, f)
		for _, nr := range out.NewRequests {
			order = append(order, nr.ID)
		}
	}
	assert.Equal(t, []string{"p0", "p1", "p3a", "p3b", "p5"}, order)
}

func TestSkipAheadIsBounded(t *testing.T) {
	cfg := Config{MaxModelLen: 32, MaxNumBatchedTokens: 64, MaxNumSeqs: 16, BlockSize: 4, NumBlocks: 11, MaxSkips: 2}
	s, f := newTestScheduler(t, cfg)
	add(t, s, "hog", tokens(12, 10), 16) // 3 blocks now, grows to 7
	step(t, s, f)
	add(t, s, "big", tokens(28, 100), 4) // needs 7 blocks: does not fit next to hog
	for i := 0; i < 4; i++ {
		add(t, s, string(rune('s'+i)), tokens(3, int32(200+10*i)), 20) // small, long-running
	}
	out, _, _ := step(t, s, f)
	var admitted []string
	for _, nr := range out.NewRequests {
		admitted = append(admitted, nr.ID)
	}
	assert.Equal(t, []string{"s", "t"}, admitted, "two small requests pass big, then big blocks the rest")
	assert.Equal(t, 2, s.requests["big"].skips)
	for i := 0; i < 5; i++ {
		out, _, _ = step(t, s, f)
		for _, nr := range out.NewRequests {
			assert.NotEqual(t, "u", nr.ID, "nothing passes big any more")
		}
	}
	reasons := drain(t, s, f)
	assert.Len(t, reasons, 6)

	// With skip-ahead off, a request that does not fit blocks the queue.
	cfg.MaxSkips = -1
	s, f = newTestScheduler(t, cfg)
	add(t, s, "hog", tokens(12, 10), 16)
	step(t, s, f)
	add(t, s, "big", tokens(28, 100), 4)
	add(t, s, "s", tokens(3, 200), 3)
	out, _, _ = step(t, s, f)
	assert.Empty(t, out.NewRequests)
}

func TestPrefixCacheHitsAndSaltIsolation(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	system := tokens(16, 10)
	prompt := func(tail int32) []int32 { return append(append([]int32(nil), system...), tail, tail+1) }
	add(t, s, "a", prompt(900), 1)
	step(t, s, f)
	add(t, s, "b", prompt(800), 1)
	add(t, s, "salted", prompt(800), 1, func(r *Request) { r.CacheSalt = "tenant-2" })
	out, deltas, st := step(t, s, f)
	got := map[string]int{}
	for _, nr := range out.NewRequests {
		got[nr.ID] = nr.NumComputedTokens
	}
	assert.Equal(t, map[string]int{"b": 16, "salted": 0}, got)
	for _, d := range deltas {
		if d.ID == "b" {
			assert.Equal(t, 16, d.NumCachedTokens)
		}
	}
	v, _ := s.Request("b")
	if v != nil {
		assert.Equal(t, 4, v.BlocksCached())
	}
	assert.Equal(t, uint64(3*18), st.PrefixCacheQueries)
	assert.Equal(t, uint64(16), st.PrefixCacheHits)
	drain(t, s, f)
	st = s.Stats()
	assert.Equal(t, 0.0, st.KVUsage)
	assert.Positive(t, st.KVBlocksCachedFree, "the cache stays warm after all requests ended")
	assert.True(t, s.ResetPrefixCache())
	assert.Zero(t, s.Stats().KVBlocksCachedFree)
}

func TestResetPrefixCacheRefusedWhileHeld(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	add(t, s, "a", tokens(9, 10), 5)
	step(t, s, f)
	assert.False(t, s.ResetPrefixCache())
}

func TestOutputStaysValidUntilSecondFollowingSchedule(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	add(t, s, "a", tokens(5, 10), 5)
	out1, _, _ := step(t, s, f)
	snapshot := append([]int32(nil), out1.NewRequests[0].BlockIDs...)
	out2, _, _ := step(t, s, f)
	assert.NotSame(t, out1, out2)
	assert.Equal(t, uint64(1), out1.Step)
	assert.Equal(t, snapshot, out1.NewRequests[0].BlockIDs)
	out3, _, _ := step(t, s, f)
	assert.Same(t, out1, out3, "the buffer of step 1 is reused by step 3")
}

// TestFailedStepEndsItsRequests: Update with no runner output ends the
// step's requests with FinishError, including one that hit blocks another
// request of the step was to fill; those blocks leave the prefix cache,
// and the blocks of earlier steps stay.
func TestFailedStepEndsItsRequests(t *testing.T) {
	cfg := testConfig()
	cfg.MaxNumBatchedTokens, cfg.MaxNumSeqs = 8, 4
	s, f := newTestScheduler(t, cfg)
	prompt := tokens(12, 10)
	add(t, s, "a", prompt, 2)
	step(t, s, f) // a: positions 0..7
	add(t, s, "b", tokens(13, 10), 2)
	out := s.Schedule() // a: 8..11; b hits a's two blocks and computes 8..12
	require.Len(t, out.NewRequests, 1)
	assert.Equal(t, 8, out.NewRequests[0].NumComputedTokens)
	f.executeFailed(out)
	deltas, st := s.Update(out, nil)
	assert.Empty(t, deltas)
	for _, id := range []string{"a", "b"} {
		_, ok := s.Request(id)
		assert.False(t, ok, "%s ended", id)
	}
	assert.Zero(t, st.NumRunning)
	assert.Equal(t, st.KVBlocksTotal, st.KVBlocksFree)
	assert.Equal(t, 8, s.kv.Lookup(kvcache.NewSeq("", 0), tokens(13, 10)), "only step 1's blocks are hits")
	require.NoError(t, checkInvariants(s))
	next := s.Schedule()
	assert.ElementsMatch(t, []string{"a", "b"}, next.FinishedRequestIDs, "the runner drops them")
	s.Update(next, f.execute(next))
	f.check(t)
}

// TestFailedStepEndsTheNextOutstandingStep: with two Outputs outstanding,
// a failure of the first ends the requests of the second too (one of them
// hit blocks the failed step was to fill) and takes its blocks out of the
// prefix cache; the second is still updated, and nothing reads K/V that
// was never written.
func TestFailedStepEndsTheNextOutstandingStep(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	prompt := tokens(13, 10)
	add(t, s, "a", prompt, 3)
	out1 := s.Schedule()
	add(t, s, "b", prompt, 3)
	out2 := s.Schedule()
	require.Len(t, out2.NewRequests, 1)
	require.Equal(t, 12, out2.NewRequests[0].NumComputedTokens, "b hits a's blocks of step 1")
	f.executeFailed(out1)
	s.Update(out1, nil)
	_, ok := s.Request("b")
	assert.False(t, ok, "b ended with the failed step it depended on")
	f.executeFailed(out2) // its requests are gone: nothing of it is used
	s.Update(out2, nil)
	assert.Zero(t, s.kv.Lookup(kvcache.NewSeq("", 0), prompt))
	require.NoError(t, checkInvariants(s))
	add(t, s, "c", prompt, 3)
	drain(t, s, f)
	f.check(t)
}

// TestLaterStepKeepsItsToken: with two Outputs outstanding, updating the
// first does not take back the computed tokens that the second advanced
// (the request's chunked prefill ends in the second and samples there).
func TestLaterStepKeepsItsToken(t *testing.T) {
	cfg := testConfig()
	cfg.LongPrefillTokenThreshold = 4
	s, f := newTestScheduler(t, cfg)
	add(t, s, "a", tokens(6, 10), 3)
	out1 := s.Schedule() // positions 0..3
	out2 := s.Schedule() // positions 4..5: samples
	s.Update(out1, f.execute(out1))
	deltas, _ := s.Update(out2, f.execute(out2))
	f.check(t)
	require.Len(t, deltas, 1)
	assert.Len(t, deltas[0].NewTokenIDs, 1)
}

// TestFailedStepResendsItsFinishedIDs: a step that failed before the
// runner applied it (the runner never saw its finished ids) hands them to
// the next Output again, so the runner drops those requests.
func TestFailedStepResendsItsFinishedIDs(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	add(t, s, "x", tokens(5, 10), 10)
	add(t, s, "y", tokens(5, 50), 10)
	step(t, s, f)
	s.Abort("x", FinishAbort)
	out := s.Schedule()
	require.Equal(t, []string{"x"}, out.FinishedRequestIDs)
	s.Update(out, nil) // failed before the runner applied anything
	next := s.Schedule()
	assert.ElementsMatch(t, []string{"x", "y"}, next.FinishedRequestIDs)
	s.Update(next, f.execute(next))
	f.check(t)
	assert.Empty(t, f.reqs, "the runner holds nothing")
}
