package scheduler

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func wantPromptLogprobs(k int) func(*Request) {
	return func(r *Request) { r.Params.PromptLogprobs = k }
}

// stepWithPromptLogprobs is step with a runner that also reports prompt
// logprobs, as the runner contract says: for the scheduled positions p of a
// request that asked for them, before its first output, the entry of
// prompt token p+1 (whose fake logprob is -(p+1)).
func stepWithPromptLogprobs(t testing.TB, s *Scheduler, f *fakeRunner) (*Output, []RequestOutput, Stats) {
	t.Helper()
	out := s.Schedule()
	ro := f.execute(out)
	f.check(t)
	add := func(id string, computed int) {
		r := s.requests[id]
		if r == nil || r.params.PromptLogprobs < 0 || r.numOutputs() > 0 {
			return
		}
		hi := min(computed+out.NumScheduledTokens[id], r.numPrompt-1)
		if computed >= hi {
			return
		}
		c := PromptLogprobsChunk{ReqID: id, Start: computed + 1}
		for p := computed; p < hi; p++ {
			c.Logprobs = append(c.Logprobs, TokenLogprobs{TokenID: r.tokens[p+1], Logprob: -float32(p + 1), Rank: 1})
		}
		ro.PromptLogprobs = append(ro.PromptLogprobs, c)
	}
	for _, nr := range out.NewRequests {
		add(nr.ID, nr.NumComputedTokens)
	}
	for _, cr := range out.CachedRequests {
		add(cr.ID, cr.NumComputedTokens)
	}
	deltas, stats := s.Update(out, ro)
	require.NoError(t, checkInvariants(s))
	return out, deltas, stats
}

func checkPromptEntries(t *testing.T, prompt []int32, got []TokenLogprobs) {
	t.Helper()
	require.Len(t, got, len(prompt)-1)
	for i, lp := range got {
		assert.Equal(t, prompt[i+1], lp.TokenID, "entry %d", i)
		assert.Equal(t, -float32(i+1), lp.Logprob, "entry %d", i)
	}
}

// TestPromptLogprobsAccumulateOverChunks: a 50-token prompt prefilled in
// chunks of 16 gets its 49 prompt logprobs with its first output, once.
func TestPromptLogprobsAccumulateOverChunks(t *testing.T) {
	cfg := testConfig()
	cfg.MaxNumBatchedTokens = 16
	s, f := newTestScheduler(t, cfg)
	prompt := tokens(50, 10)
	add(t, s, "a", prompt, 3, wantPromptLogprobs(2))
	add(t, s, "plain", tokens(5, 500), 3)
	var first []TokenLogprobs
	outputs := 0
	for i := 0; i < 12 && s.HasUnfinished(); i++ {
		_, deltas, _ := stepWithPromptLogprobs(t, s, f)
		for _, d := range deltas {
			if d.ID == "plain" {
				assert.Nil(t, d.PromptLogprobs, "plain did not ask")
				continue
			}
			if outputs == 0 {
				first = d.PromptLogprobs
			} else {
				assert.Nil(t, d.PromptLogprobs, "output %d", outputs)
			}
			outputs++
		}
	}
	require.Equal(t, 3, outputs)
	checkPromptEntries(t, prompt, first)
}

// TestPromptLogprobsSkipPrefixCache: a request that wants prompt logprobs
// reads no prefix-cache hit (and counts no query), but its blocks still
// enter the cache for later requests.
func TestPromptLogprobsSkipPrefixCache(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	system := tokens(16, 10)
	prompt := func(tail int32) []int32 { return append(append([]int32(nil), system...), tail, tail+1) }
	add(t, s, "a", prompt(900), 1)
	step(t, s, f)
	add(t, s, "lp", prompt(800), 1, wantPromptLogprobs(0))
	out, deltas, st := stepWithPromptLogprobs(t, s, f)
	require.Len(t, out.NewRequests, 1)
	assert.Equal(t, 0, out.NewRequests[0].NumComputedTokens, "no prefix hit for a prompt-logprobs request")
	require.Len(t, deltas, 1)
	assert.Equal(t, 0, deltas[0].NumCachedTokens)
	checkPromptEntries(t, prompt(800), deltas[0].PromptLogprobs)
	assert.Equal(t, uint64(18), st.PrefixCacheQueries, "only a's lookup counts")
	add(t, s, "after", prompt(700), 1)
	out, _, _ = step(t, s, f)
	require.Len(t, out.NewRequests, 1)
	assert.Equal(t, 16, out.NewRequests[0].NumComputedTokens, "later requests still hit")
}

// TestPromptLogprobsOneTokenPrompt: a one-token prompt has no prompt
// logprob entries (but a non-nil empty list).
func TestPromptLogprobsOneTokenPrompt(t *testing.T) {
	s, f := newTestScheduler(t, testConfig())
	add(t, s, "a", tokens(1, 10), 1, wantPromptLogprobs(1))
	_, deltas, _ := stepWithPromptLogprobs(t, s, f)
	require.Len(t, deltas, 1)
	assert.NotNil(t, deltas[0].PromptLogprobs)
	assert.Empty(t, deltas[0].PromptLogprobs)
}

// TestPromptLogprobsRecomputedAfterPreemption: a request preempted in the
// middle of its prefill recomputes from scratch; the entries computed twice
// are stored once.
func TestPromptLogprobsRecomputedAfterPreemption(t *testing.T) {
	cfg := testConfig()
	cfg.MaxNumBatchedTokens = 8
	s, f := newTestScheduler(t, cfg)
	prompt := tokens(20, 10)
	add(t, s, "a", prompt, 2, wantPromptLogprobs(0))
	stepWithPromptLogprobs(t, s, f)
	stepWithPromptLogprobs(t, s, f)
	buf := &s.bufs[(s.step+1)&1]
	budget := 0
	s.preempt(0, buf, &budget)
	var got []TokenLogprobs
	for i := 0; i < 10 && got == nil; i++ {
		_, deltas, _ := stepWithPromptLogprobs(t, s, f)
		for _, d := range deltas {
			got = d.PromptLogprobs
		}
	}
	checkPromptEntries(t, prompt, got)
}
