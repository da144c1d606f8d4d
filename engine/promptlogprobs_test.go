package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/engine/enginetest"
	"github.com/vserve/vserve/scheduler"
)

// TestPromptLogprobsPassThrough: with the real scheduler and a prefill in
// chunks of 4, the prompt logprobs reach the stream once, with the first
// token, and Collect keeps them.
func TestPromptLogprobsPassThrough(t *testing.T) {
	sched, err := scheduler.New(scheduler.Config{MaxModelLen: 64, NumBlocks: 32, BlockSize: 4, MaxNumBatchedTokens: 4})
	require.NoError(t, err)
	eng := engine.New(engine.Config{}, sched, &enginetest.FakeExecutor{})
	defer func() { require.NoError(t, eng.Shutdown(context.Background())) }()
	prompt := []int32{1, 5, 9, 13, 17, 21, 25, 29, 33, 37}
	for _, k := range []int{-1, 0, 2} {
		p := scheduler.DefaultSamplingParams(3)
		p.PromptLogprobs = k
		st, err := eng.Add(context.Background(), &engine.Request{ID: "r", PromptTokenIDs: prompt, Params: p})
		require.NoError(t, err)
		first, err := st.Next(context.Background())
		require.NoError(t, err)
		require.NotEmpty(t, first.TokenIDs)
		out, err := st.Collect(context.Background())
		require.NoError(t, err)
		st.Close()
		assert.Nil(t, out.PromptLogprobs, "only the first output carries them (k=%d)", k)
		if k < 0 {
			assert.Nil(t, first.PromptLogprobs)
			continue
		}
		require.Len(t, first.PromptLogprobs, len(prompt)-1, "k=%d", k)
		for i, lp := range first.PromptLogprobs {
			assert.Equal(t, prompt[i+1], lp.TokenID)
			assert.Equal(t, float32(enginetest.FakePromptLogprob), lp.Logprob)
			assert.Len(t, lp.Top, k)
		}
	}
	p := scheduler.DefaultSamplingParams(3)
	p.PromptLogprobs = 1
	st, err := eng.Add(context.Background(), &engine.Request{ID: "all", PromptTokenIDs: prompt, Params: p})
	require.NoError(t, err)
	defer st.Close()
	out, err := st.Collect(context.Background())
	require.NoError(t, err)
	assert.Len(t, out.TokenIDs, 3)
	assert.Len(t, out.PromptLogprobs, len(prompt)-1, "Collect keeps the prompt logprobs")
}
