package app

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEchoLogprobsRealModel: echo with logprobs and prompt_logprobs through
// the real stack (built-in model, tokenizer, scheduler, runner, kernels).
func TestEchoLogprobsRealModel(t *testing.T) {
	a, base := startApp(t)
	require.NoError(t, a.LoadErr())
	defer func() { require.NoError(t, a.Shutdown(context.Background())) }()
	status, m := postJSON(t, base+"/v1/completions", `{"prompt":"hello there","max_tokens":2,"ignore_eos":true,"echo":true,"logprobs":2}`)
	require.Equal(t, 200, status, "%v", m)
	numPrompt := int(m["usage"].(map[string]any)["prompt_tokens"].(float64))
	c := m["choices"].([]any)[0].(map[string]any)
	lp := c["logprobs"].(map[string]any)
	values := lp["token_logprobs"].([]any)
	require.Len(t, values, numPrompt+2)
	require.Len(t, lp["tokens"], numPrompt+2)
	assert.Nil(t, values[0])
	assert.Nil(t, lp["top_logprobs"].([]any)[0])
	for i, v := range values[1:] {
		f, ok := v.(float64)
		require.True(t, ok, "token %d: %v", i+1, v)
		assert.True(t, f <= 0 && !math.IsNaN(f), "token %d: logprob %v", i+1, f)
		top := lp["top_logprobs"].([]any)[i+1].(map[string]any)
		assert.True(t, len(top) >= 1 && len(top) <= 3, "token %d: top %v: the token and the top 2 (keyed by text: tokens may share one)", i+1, top)
		assert.Contains(t, top, lp["tokens"].([]any)[i+1], "token %d: the chosen token is among its top logprobs", i+1)
	}
	plp := c["prompt_logprobs"].([]any)
	require.Len(t, plp, numPrompt)
	for i, e := range plp[1:] {
		entry := e.(map[string]any)
		assert.GreaterOrEqual(t, len(entry), 2, "position %d: the prompt token and the top 2", i+1)
	}

	status, m = postJSON(t, base+"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"prompt_logprobs":0}`)
	require.Equal(t, 200, status, "%v", m)
	require.Len(t, m["prompt_logprobs"], int(m["usage"].(map[string]any)["prompt_tokens"].(float64)))
}
