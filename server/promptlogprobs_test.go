package server_test

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fake executor reports logprob -0.5 (rank 1) for every prompt token
// with top j+1 = token+j at -0.5-j, and -0.25 for every sampled token; the
// byte tokenizer maps byte b to id b+3 after BOS (id 1, text "<s>").

func TestCompletionEchoLogprobs(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	m := h.post("/v1/completions", map[string]any{"prompt": "hi", "max_tokens": 2, "echo": true, "logprobs": 1}, 200)
	c := m["choices"].([]any)[0].(map[string]any)
	assert.Equal(t, "hiab", c["text"])
	lp := c["logprobs"].(map[string]any)
	assert.Equal(t, []any{"<s>", "h", "i", "a", "b"}, lp["tokens"])
	assert.Equal(t, []any{nil, -0.5, -0.5, -0.25, -0.25}, lp["token_logprobs"])
	assert.Equal(t, []any{nil, map[string]any{"h": -0.5}, map[string]any{"i": -0.5}, map[string]any{"a": -0.25}, map[string]any{"b": -0.25}}, lp["top_logprobs"])
	assert.Equal(t, []any{0.0, 3.0, 4.0, 5.0, 6.0}, lp["text_offset"])
	// As in vLLM, the prompt logprobs echo computed are also in the choice.
	plp := c["prompt_logprobs"].([]any)
	require.Len(t, plp, 3)
	assert.Nil(t, plp[0])
	assert.Equal(t, map[string]any{"107": map[string]any{"logprob": -0.5, "rank": 1.0, "decoded_token": "h"}}, plp[1])
}

func TestCompletionPromptLogprobs(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	resp := h.do("POST", "/v1/completions", map[string]any{"prompt": "hi", "max_tokens": 2, "prompt_logprobs": 2})
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	// The prompt token comes first, then the top k in rank order (the
	// prompt token, already listed, is not repeated).
	assert.Contains(t, string(raw), `"prompt_logprobs":[null,{"107":{"logprob":-0.5,"rank":1,"decoded_token":"h"},"108":{"logprob":-1.5,"rank":2,"decoded_token":"i"}},{"108":{"logprob":-0.5,"rank":1,"decoded_token":"i"},"109":{"logprob":-1.5,"rank":2,"decoded_token":"j"}}]`)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	c := m["choices"].([]any)[0].(map[string]any)
	assert.Equal(t, "ab", c["text"])
	assert.Nil(t, c["logprobs"])

	// Without prompt_logprobs the field is absent.
	m = h.post("/v1/completions", map[string]any{"prompt": "hi", "max_tokens": 2}, 200)
	assert.NotContains(t, m["choices"].([]any)[0], "prompt_logprobs")
}

// TestCompletionEchoLogprobsStream: the prompt goes out with the first
// token, its logprobs leading the first chunk's (null for the first prompt
// token); later chunks carry the generated tokens only.
func TestCompletionEchoLogprobsStream(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	events, done := h.sse("/v1/completions", map[string]any{"prompt": "hi", "max_tokens": 3, "echo": true, "logprobs": 0, "stream": true})
	require.True(t, done)
	var text strings.Builder
	var tokens, offsets, values []any
	for i, e := range events {
		c := e["choices"].([]any)[0].(map[string]any)
		if i == 0 {
			assert.True(t, strings.HasPrefix(c["text"].(string), "hia"), "the first chunk is the prompt and the first token: %q", c["text"])
		}
		assert.NotContains(t, c, "prompt_logprobs", "stream chunks have no prompt_logprobs field")
		text.WriteString(c["text"].(string))
		lp := c["logprobs"].(map[string]any)
		tokens = append(tokens, lp["tokens"].([]any)...)
		offsets = append(offsets, lp["text_offset"].([]any)...)
		values = append(values, lp["token_logprobs"].([]any)...)
	}
	assert.Equal(t, "hiabc", text.String())
	assert.Equal(t, []any{"<s>", "h", "i", "a", "b", "c"}, tokens)
	assert.Equal(t, []any{nil, -0.5, -0.5, -0.25, -0.25, -0.25}, values)
	assert.Equal(t, []any{0.0, 3.0, 4.0, 5.0, 6.0, 7.0}, offsets)
}

// TestPromptLogprobsZeroWithStream: prompt_logprobs 0 is allowed with
// stream (as in vLLM) and shows nowhere.
func TestPromptLogprobsZeroWithStream(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	events, done := h.sse("/v1/completions", map[string]any{"prompt": "hi", "max_tokens": 2, "prompt_logprobs": 0, "stream": true})
	require.True(t, done)
	var text strings.Builder
	for _, e := range events {
		c := e["choices"].([]any)[0].(map[string]any)
		assert.NotContains(t, c, "prompt_logprobs")
		text.WriteString(c["text"].(string))
	}
	assert.Equal(t, "ab", text.String())
}

func TestChatPromptLogprobs(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	m := h.post("/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "hi"}},
		"max_tokens": 2, "prompt_logprobs": 1, "n": 2}, 200)
	plp, ok := m["prompt_logprobs"].([]any)
	require.True(t, ok, "top-level prompt_logprobs: %v", m)
	u := m["usage"].(map[string]any)
	require.Len(t, plp, int(u["prompt_tokens"].(float64)))
	assert.Nil(t, plp[0])
	for _, e := range plp[1:] {
		require.Len(t, e, 1, "top 1 is the prompt token itself here")
		for _, v := range e.(map[string]any) {
			assert.Equal(t, -0.5, v.(map[string]any)["logprob"])
		}
	}
	assert.NotContains(t, m["choices"].([]any)[0], "prompt_logprobs")
}

// TestPromptLogprobsBypassPrefixCache: a request with prompt_logprobs reads
// no prefix-cache hit; the requests around it do.
func TestPromptLogprobsBypassPrefixCache(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	prompt := strings.Repeat("abcdefgh", 5)
	cached := func(body map[string]any) float64 {
		m := h.post("/v1/completions", body, 200)
		return m["usage"].(map[string]any)["prompt_tokens_details"].(map[string]any)["cached_tokens"].(float64)
	}
	assert.Equal(t, 0.0, cached(map[string]any{"prompt": prompt, "max_tokens": 1}))
	assert.Equal(t, 0.0, cached(map[string]any{"prompt": prompt, "max_tokens": 1, "prompt_logprobs": 0}))
	assert.Equal(t, 32.0, cached(map[string]any{"prompt": prompt, "max_tokens": 1}))
}

// TestCompletionEchoLogprobsWithMorePromptLogprobs: with both, the engine
// computes prompt_logprobs alternatives, the choice's prompt_logprobs show
// all of them and the echoed logprobs only as many as logprobs asks.
func TestCompletionEchoLogprobsWithMorePromptLogprobs(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	m := h.post("/v1/completions", map[string]any{"prompt": "hi", "max_tokens": 1, "echo": true, "logprobs": 1, "prompt_logprobs": 3}, 200)
	c := m["choices"].([]any)[0].(map[string]any)
	top := c["logprobs"].(map[string]any)["top_logprobs"].([]any)
	assert.Equal(t, map[string]any{"h": -0.5}, top[1])
	assert.Len(t, c["prompt_logprobs"].([]any)[1], 3)
}
