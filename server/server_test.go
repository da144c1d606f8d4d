package server_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/engine/enginetest"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHealthLoadingThenReady(t *testing.T) {
	h := newHarness(t, harnessOpts{noModel: true})
	resp := h.do("GET", "/health", nil)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	e := h.post("/v1/completions", map[string]any{"prompt": "hi"}, http.StatusServiceUnavailable)
	assert.Contains(t, e["error"].(map[string]any)["message"], "loading")
	h.setModel(256)
	resp = h.do("GET", "/health", nil)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	h.srv.SetClosing()
	resp = h.do("GET", "/health", nil)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

func TestVersionAndModels(t *testing.T) {
	h := newHarness(t, harnessOpts{server: server.Options{Version: "1.2.3"}})
	resp := h.do("GET", "/version", nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.JSONEq(t, `{"version":"1.2.3"}`, string(body))
	resp = h.do("GET", "/v1/models", nil)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.JSONEq(t, `{"object":"list","data":[
		{"id":"test-model","object":"model","created":1700000000,"owned_by":"vserve","root":"/models/test","parent":null,"max_model_len":256,"description":"fake"},
		{"id":"alias","object":"model","created":1700000000,"owned_by":"vserve","root":"/models/test","parent":null,"max_model_len":256,"description":"fake"}]}`, string(body))
}

func TestCompletionBasic(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	m := h.post("/v1/completions", map[string]any{"model": "test-model", "prompt": "hello", "max_tokens": 5}, 200)
	assert.Equal(t, "text_completion", m["object"])
	assert.True(t, strings.HasPrefix(m["id"].(string), "cmpl-"))
	assert.Equal(t, "test-model", m["model"])
	assert.NotZero(t, m["created"])
	ch := m["choices"].([]any)
	require.Len(t, ch, 1)
	c := ch[0].(map[string]any)
	assert.Equal(t, "abcde", c["text"])
	assert.Equal(t, "length", c["finish_reason"])
	assert.Equal(t, float64(0), c["index"])
	assert.Nil(t, c["logprobs"])
	u := m["usage"].(map[string]any)
	assert.Equal(t, float64(6), u["prompt_tokens"], "BOS + 5 bytes")
	assert.Equal(t, float64(5), u["completion_tokens"])
	assert.Equal(t, float64(11), u["total_tokens"])
	assert.Contains(t, u, "prompt_tokens_details")
	st := h.settle()
	assert.Equal(t, st.KVBlocksTotal, st.KVBlocksFree)
}

func TestCompletionPromptForms(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tests := []struct {
		name    string
		prompt  any
		n       int
		choices int
		prompts int // prompt_tokens
	}{
		{"string", "ab", 1, 1, 3},
		{"list of strings", []string{"ab", "cde"}, 1, 2, 7},
		{"token ids", []int{1, 100, 101}, 1, 1, 3},
		{"token id lists", [][]int{{1, 100}, {1, 101, 102}}, 2, 4, 5},
		{"n", "x", 3, 3, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := h.post("/v1/completions", map[string]any{"prompt": tc.prompt, "max_tokens": 3, "n": tc.n}, 200)
			ch := m["choices"].([]any)
			require.Len(t, ch, tc.choices)
			for i, c := range ch {
				assert.Equal(t, float64(i), c.(map[string]any)["index"])
				assert.Equal(t, "abc", c.(map[string]any)["text"])
			}
			u := m["usage"].(map[string]any)
			assert.Equal(t, float64(tc.prompts), u["prompt_tokens"])
			assert.Equal(t, float64(3*tc.choices), u["completion_tokens"])
		})
	}
}

func TestCompletionStopStrings(t *testing.T) {
	var mu sync.Mutex
	ends := map[string]engine.RequestEnd{} // by engine request id
	h := newHarness(t, harnessOpts{engine: engine.Config{Hooks: engine.Hooks{
		OnRequestEnd: func(r engine.RequestEnd) { mu.Lock(); ends[r.ID] = r; mu.Unlock() },
	}}})
	type answer struct {
		id     string
		tokens int
		finish string
	}
	var answers []answer
	tests := []struct {
		name   string
		body   map[string]any
		text   string
		finish string
		reason any // stop_reason, as JSON decodes it
	}{
		{"stop string", map[string]any{"stop": "cde"}, "ab", "stop", "cde"},
		{"stop list earliest wins", map[string]any{"stop": []string{"fg", "d"}}, "abc", "stop", "d"},
		{"include stop", map[string]any{"stop": "cd", "include_stop_str_in_output": true}, "abcd", "stop", "cd"},
		{"no match flushes held text", map[string]any{"stop": "zz", "max_tokens": 3}, "abc", "length", nil},
		// As in vLLM, the text of the token the request stopped at (EOS or
		// one of stop_token_ids) is left out unless
		// include_stop_str_in_output; the token still counts.
		{"stop token id", map[string]any{"stop_token_ids": []int{102}}, "ab", "stop", 102.0},
		{"include stop token", map[string]any{"stop_token_ids": []int{102}, "include_stop_str_in_output": true}, "abc", "stop", 102.0},
		{"min tokens defers stop id", map[string]any{"stop_token_ids": []int{100}, "min_tokens": 2, "max_tokens": 30}, "abcdefghijklmnopqrstuvwxyz", "stop", 100.0},
		// "d" is a stop token: its text is left out, so "cd" never forms.
		{"stop token inside a stop string", map[string]any{"stop": "cd", "stop_token_ids": []int{103}}, "abc", "stop", 103.0},
		// As in vLLM, a stop string counts once more than min_tokens tokens
		// were generated: it must end in a later token's text.
		{"min tokens defers a stop string", map[string]any{"stop": "c", "min_tokens": 3, "max_tokens": 40}, "abcdefghijklmnopqrstuvwxyzab", "stop", "c"},
		{"min tokens passes over a stop string", map[string]any{"stop": "bc", "min_tokens": 3, "max_tokens": 40}, "abcdefghijklmnopqrstuvwxyza", "stop", "bc"},
		{"stop string across the min tokens boundary", map[string]any{"stop": "cd", "min_tokens": 3}, "ab", "stop", "cd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"prompt": "p", "max_tokens": 20}
			for k, v := range tc.body {
				body[k] = v
			}
			m := h.post("/v1/completions", body, 200)
			c := m["choices"].([]any)[0].(map[string]any)
			assert.Equal(t, tc.text, c["text"])
			assert.Equal(t, tc.finish, c["finish_reason"])
			assert.Equal(t, tc.reason, c["stop_reason"])
			answers = append(answers, answer{m["id"].(string) + "-0",
				int(m["usage"].(map[string]any)["completion_tokens"].(float64)), tc.finish})
			body["stream"] = true
			events, done := h.sse("/v1/completions", body)
			require.True(t, done)
			var sb strings.Builder
			var finish, reason any
			for _, e := range events {
				for _, c := range e["choices"].([]any) {
					sb.WriteString(c.(map[string]any)["text"].(string))
					if f := c.(map[string]any)["finish_reason"]; f != nil {
						finish, reason = f, c.(map[string]any)["stop_reason"]
					}
				}
			}
			assert.Equal(t, tc.text, sb.String(), "streamed text")
			assert.Equal(t, tc.finish, finish)
			assert.Equal(t, tc.reason, reason, "streamed stop_reason")
		})
	}
	st := h.settle()
	assert.Equal(t, st.KVBlocksTotal, st.KVBlocksFree, "stopped requests freed their blocks")
	// The engine (whose hooks feed the metrics) ended each request where the
	// response did: same finish reason, same number of tokens.
	require.NoError(t, h.eng.Shutdown(context.Background())) // every hook has run
	mu.Lock()
	defer mu.Unlock()
	for _, a := range answers {
		end, ok := ends[a.id]
		require.True(t, ok, a.id)
		assert.Equal(t, a.finish, string(end.Reason), a.id)
		assert.Equal(t, a.tokens, end.NumOutputTokens, a.id)
	}
}

func TestCompletionStreamIncludeUsageAndEcho(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	events, done := h.sse("/v1/completions", map[string]any{"prompt": "hi ", "max_tokens": 4, "stream": true, "echo": true,
		"stream_options": map[string]any{"include_usage": true}})
	require.True(t, done)
	require.NotEmpty(t, events)
	last := events[len(events)-1]
	assert.Empty(t, last["choices"])
	u := last["usage"].(map[string]any)
	assert.Equal(t, float64(4), u["completion_tokens"])
	assert.Equal(t, float64(4), u["prompt_tokens"])
	var sb strings.Builder
	for _, e := range events[:len(events)-1] {
		assert.Equal(t, "text_completion", e["object"])
		assert.NotContains(t, e, "usage")
		sb.WriteString(e["choices"].([]any)[0].(map[string]any)["text"].(string))
	}
	assert.Equal(t, "hi abcd", sb.String())

	m := h.post("/v1/completions", map[string]any{"prompt": "hi ", "max_tokens": 2, "echo": true}, 200)
	assert.Equal(t, "hi ab", m["choices"].([]any)[0].(map[string]any)["text"])
}

func TestCompletionLogprobs(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	m := h.post("/v1/completions", map[string]any{"prompt": "x", "max_tokens": 3, "logprobs": 2}, 200)
	lp := m["choices"].([]any)[0].(map[string]any)["logprobs"].(map[string]any)
	assert.Equal(t, []any{"a", "b", "c"}, lp["tokens"])
	assert.Equal(t, []any{-0.25, -0.25, -0.25}, lp["token_logprobs"])
	assert.Equal(t, []any{0.0, 1.0, 2.0}, lp["text_offset"])
	top := lp["top_logprobs"].([]any)
	require.Len(t, top, 3)
	assert.Equal(t, map[string]any{"a": -0.25, "b": -1.25}, top[0])
}

// sampledBelowTop reports every sampled token at rank 3, below two others.
type sampledBelowTop struct{ enginetest.FakeExecutor }

func (x *sampledBelowTop) Execute(out *scheduler.Output) (*scheduler.RunnerOutput, error) {
	ro, err := x.FakeExecutor.Execute(out)
	if ro != nil {
		for _, lps := range ro.Logprobs {
			for i := range lps {
				lps[i].Logprob, lps[i].Rank = -2, 3
				lps[i].Top = []scheduler.TopLogprob{{TokenID: 120, Logprob: -0.5}, {TokenID: 121, Logprob: -1}}
			}
		}
	}
	return ro, err
}

// TestCompletionTopLogprobsHoldTheChosenToken: as in vLLM (and OpenAI's
// legacy completions), top_logprobs holds the chosen token besides the
// top logprobs, logprobs+1 entries when it is not among them.
func TestCompletionTopLogprobsHoldTheChosenToken(t *testing.T) {
	h := newHarness(t, harnessOpts{exec: &sampledBelowTop{enginetest.FakeExecutor{Next: letters}}})
	m := h.post("/v1/completions", map[string]any{"prompt": "x", "max_tokens": 2, "logprobs": 2}, 200)
	lp := m["choices"].([]any)[0].(map[string]any)["logprobs"].(map[string]any)
	assert.Equal(t, []any{"a", "b"}, lp["tokens"])
	top := lp["top_logprobs"].([]any)
	assert.Equal(t, map[string]any{"u": -0.5, "v": -1.0, "a": -2.0}, top[0])
	assert.Equal(t, map[string]any{"u": -0.5, "v": -1.0, "b": -2.0}, top[1])
}

func TestChat(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	body := map[string]any{"model": "alias", "messages": []map[string]any{
		{"role": "system", "content": "be brief"},
		{"role": "user", "content": []map[string]any{{"type": "text", "text": "hi"}}},
	}, "max_completion_tokens": 4, "logprobs": true, "top_logprobs": 1}
	m := h.post("/v1/chat/completions", body, 200)
	assert.Equal(t, "chat.completion", m["object"])
	assert.True(t, strings.HasPrefix(m["id"].(string), "chatcmpl-"))
	assert.Equal(t, "test-model", m["model"])
	c := m["choices"].([]any)[0].(map[string]any)
	msg := c["message"].(map[string]any)
	assert.Equal(t, "assistant", msg["role"])
	assert.Equal(t, "abcd", msg["content"])
	assert.Equal(t, "length", c["finish_reason"])
	content := c["logprobs"].(map[string]any)["content"].([]any)
	require.Len(t, content, 4)
	first := content[0].(map[string]any)
	assert.Equal(t, "a", first["token"])
	assert.Equal(t, []any{97.0}, first["bytes"])
	assert.Len(t, first["top_logprobs"], 1)
	u := m["usage"].(map[string]any)
	assert.Equal(t, float64(len("system: be brief\nuser: hi\nassistant:")), u["prompt_tokens"])

	body["stream"] = true
	body["n"] = 2
	body["stream_options"] = map[string]any{"include_usage": true}
	events, done := h.sse("/v1/chat/completions", body)
	require.True(t, done)
	texts := map[float64]string{}
	roles := map[float64]bool{}
	finishes := map[float64]any{}
	for _, e := range events {
		assert.Equal(t, "chat.completion.chunk", e["object"])
		for _, c := range e["choices"].([]any) {
			cm := c.(map[string]any)
			idx := cm["index"].(float64)
			d := cm["delta"].(map[string]any)
			if d["role"] == "assistant" {
				assert.Empty(t, texts[idx], "role comes first")
				roles[idx] = true
			}
			if s, ok := d["content"].(string); ok {
				texts[idx] += s
			}
			if f := cm["finish_reason"]; f != nil {
				finishes[idx] = f
			}
		}
	}
	assert.Equal(t, map[float64]string{0: "abcd", 1: "abcd"}, texts)
	assert.Equal(t, map[float64]bool{0: true, 1: true}, roles)
	assert.Equal(t, map[float64]any{0: "length", 1: "length"}, finishes)
	assert.Equal(t, float64(8), events[len(events)-1]["usage"].(map[string]any)["completion_tokens"])
}

func TestTokenizeDetokenize(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	m := h.post("/tokenize", map[string]any{"prompt": "ab", "return_token_strs": true}, 200)
	assert.Equal(t, []any{1.0, 100.0, 101.0}, m["tokens"])
	assert.Equal(t, 3.0, m["count"])
	assert.Equal(t, 256.0, m["max_model_len"])
	assert.Equal(t, []any{"<s>", "a", "b"}, m["token_strs"])
	m = h.post("/tokenize", map[string]any{"prompt": "ab", "add_special_tokens": false}, 200)
	assert.Equal(t, []any{100.0, 101.0}, m["tokens"])
	m = h.post("/tokenize", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "add_generation_prompt": false}, 200)
	assert.Equal(t, float64(len("user: x\n")), m["count"])
	m = h.post("/detokenize", map[string]any{"tokens": []int{1, 100, 101}}, 200)
	assert.Equal(t, "<s>ab", m["prompt"])
	h.post("/detokenize", map[string]any{"tokens": []int{9999}}, 400)
	h.post("/tokenize", map[string]any{}, 400)
}

func TestErrors(t *testing.T) {
	h := newHarness(t, harnessOpts{maxModelLen: 64, server: server.Options{MaxBodyBytes: 1 << 10}})
	tests := []struct {
		name   string
		path   string
		body   any
		status int
		param  string
		msg    string
	}{
		{"malformed json", "/v1/completions", `{"prompt":`, 400, "", "Malformed JSON"},
		{"body not an object", "/v1/completions", `[1, 2]`, 400, "", "must be a JSON object, got a JSON array"},
		{"unsupported content part", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user",
			"content": []map[string]any{{"type": "image_url", "image_url": map[string]any{"url": "x"}}}}}}, 400, "",
			`Invalid request: content part 0: type "image_url" is not supported`},
		{"wrong type", "/v1/completions", `{"prompt":"x","max_tokens":"many"}`, 400, "max_tokens", "max_tokens: expected an integer, got a JSON string"},
		{"unknown model", "/v1/completions", map[string]any{"model": "gpt-9", "prompt": "x"}, 404, "model", "does not exist"},
		{"missing prompt", "/v1/completions", map[string]any{"max_tokens": 1}, 400, "prompt", "required"},
		{"empty prompt list", "/v1/completions", map[string]any{"prompt": []string{}}, 400, "prompt", "empty"},
		{"bad prompt type", "/v1/completions", map[string]any{"prompt": map[string]any{}}, 400, "prompt", "must be"},
		{"token out of vocab", "/v1/completions", map[string]any{"prompt": []int{1, 5000}}, 400, "prompt", "out of vocabulary"},
		{"context length", "/v1/completions", map[string]any{"prompt": "abc", "max_tokens": 61}, 400, "input_tokens",
			"This model's maximum context length is 64 tokens. However, you requested 61 output tokens and your prompt contains at least 4 input tokens, for a total of at least 65 tokens."},
		{"prompt fills context", "/v1/completions", map[string]any{"prompt": strings.Repeat("a", 63)}, 400, "input_tokens", "maximum context length is 64"},
		{"temperature", "/v1/completions", map[string]any{"prompt": "x", "temperature": -1}, 400, "temperature", "temperature"},
		{"top_p", "/v1/completions", map[string]any{"prompt": "x", "top_p": 0}, 400, "top_p", "top_p"},
		{"max_tokens zero", "/v1/completions", map[string]any{"prompt": "x", "max_tokens": 0}, 400, "max_tokens", "at least 1"},
		{"max_completion_tokens zero", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "max_completion_tokens": 0}, 400, "max_completion_tokens", "max_completion_tokens must be at least 1"},
		{"n", "/v1/completions", map[string]any{"prompt": "x", "n": 0}, 400, "n", "n must be"},
		{"logprobs", "/v1/completions", map[string]any{"prompt": "x", "logprobs": 21}, 400, "logprobs", "between 0 and 20"},
		{"prompt_logprobs negative", "/v1/completions", map[string]any{"prompt": "x", "prompt_logprobs": -2}, 400, "prompt_logprobs", "must be a positive value or -1"},
		{"prompt_logprobs over max", "/v1/completions", map[string]any{"prompt": "x", "prompt_logprobs": 21}, 400, "prompt_logprobs", "Requested prompt logprobs of 21, which is greater than max allowed: 20"},
		{"prompt_logprobs whole vocab", "/v1/completions", map[string]any{"prompt": "x", "prompt_logprobs": -1}, 400, "prompt_logprobs", "Requested prompt logprobs of 259"},
		{"prompt_logprobs stream", "/v1/completions", map[string]any{"prompt": "x", "prompt_logprobs": 1, "stream": true}, 400, "prompt_logprobs", "not available when `stream=True`"},
		{"chat prompt_logprobs stream", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "prompt_logprobs": -1, "stream": true}, 400, "prompt_logprobs", "not available when `stream=True`"},
		{"chat prompt_logprobs over max", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "prompt_logprobs": 50}, 400, "prompt_logprobs", "greater than max allowed: 20"},
		{"logit bias key", "/v1/completions", map[string]any{"prompt": "x", "logit_bias": map[string]any{"abc": 1}}, 400, "logit_bias", "not a token id"},
		{"stop ids", "/v1/completions", map[string]any{"prompt": "x", "stop_token_ids": []int{-1}}, 400, "stop_token_ids", "out of range"},
		{"stream options without stream", "/v1/completions", map[string]any{"prompt": "x", "stream_options": map[string]any{"include_usage": true}}, 400, "stream_options", "only allowed"},
		{"timeout", "/v1/completions", map[string]any{"prompt": "x", "timeout": -1}, 400, "timeout", "positive"},
		{"best_of", "/v1/completions", map[string]any{"prompt": "x", "best_of": 3}, 400, "best_of", "not supported"},
		{"priority under fcfs", "/v1/completions", map[string]any{"prompt": "x", "priority": 5}, 400, "priority", "priority scheduling is not enabled"},
		{"chat no messages", "/v1/chat/completions", map[string]any{"messages": []any{}}, 400, "messages", "empty"},
		{"chat bad role", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "wizard", "content": "x"}}}, 400, "messages", "role"},
		{"chat image part", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "", "not supported"},
		{"continue_final_message with add_generation_prompt", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "assistant", "content": "x"}}, "continue_final_message": true, "add_generation_prompt": true}, 400, "continue_final_message", "Cannot set both"},
		{"chat top_logprobs without logprobs", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "top_logprobs": 2}, 400, "top_logprobs", "requires logprobs"},
		// Features vserve lacks are refused, not silently ignored.
		{"response_format json", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "response_format": map[string]any{"type": "json_object"}}, 400, "response_format", "not supported"},
		{"completions response_format", "/v1/completions", map[string]any{"prompt": "x", "response_format": map[string]any{"type": "json_schema"}}, 400, "response_format", "not supported"},
		{"guided_json", "/v1/completions", map[string]any{"prompt": "x", "guided_json": map[string]any{"type": "object"}}, 400, "guided_json", "not supported"},
		{"guided_choice", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "guided_choice": []string{"a", "b"}}, 400, "guided_choice", "not supported"},
		{"tools", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "f"}}}}, 400, "tools", "not supported"},
		{"tool_choice required", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "tool_choice": "required"}, 400, "tool_choice", "not supported"},
		{"functions", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "functions": []any{map[string]any{"name": "f"}}}, 400, "functions", "not supported"},
		{"wrong type for a number", "/v1/completions", map[string]any{"prompt": "x", "temperature": "hot"}, 400, "temperature", "temperature: expected a number, got a JSON string"},
		{"wrong type in chat", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "logprobs": "yes"}, 400, "logprobs", "expected a boolean"},
		{"fraction for an integer", "/v1/completions", map[string]any{"prompt": "x", "max_tokens": 1.5}, 400, "max_tokens", "expected an integer, got a JSON number 1.5"},
		{"body too large", "/v1/completions", map[string]any{"prompt": strings.Repeat("a", 2000)}, 413, "", "larger than"},
		{"unknown route", "/v1/embeddings", map[string]any{}, 404, "", "no route"},
		{"wrong method", "/v1/models", map[string]any{}, 405, "", "not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := h.post(tc.path, tc.body, tc.status)
			e, ok := m["error"].(map[string]any)
			require.True(t, ok, "OpenAI error body: %v", m)
			assert.Contains(t, e["message"], tc.msg)
			assert.NotEmpty(t, e["type"])
			assert.Contains(t, e, "code")
			if tc.param != "" {
				assert.Equal(t, tc.param, e["param"])
			} else {
				assert.Contains(t, e, "param")
			}
		})
	}
	snap := h.eng.Snapshot()
	assert.Zero(t, snap.NumActive, "bad input leaves nothing behind")
	assert.Zero(t, h.sched.NumWaiting()+h.sched.NumRunning())
}

// TestPriorityServedUnderPriorityScheduling: a request's priority is taken
// when the engine schedules by priority (refused otherwise: TestErrors).
func TestPriorityServedUnderPriorityScheduling(t *testing.T) {
	h := newHarness(t, harnessOpts{priority: true})
	m := h.post("/v1/completions", map[string]any{"prompt": "x", "max_tokens": 2, "priority": 5}, 200)
	assert.Equal(t, "ab", m["choices"].([]any)[0].(map[string]any)["text"])
}

// paramsRecorder records the sampling parameters of every request the
// engine hands the executor.
type paramsRecorder struct {
	enginetest.FakeExecutor
	mu     sync.Mutex
	params []scheduler.SamplingParams
}

func (x *paramsRecorder) Execute(out *scheduler.Output) (*scheduler.RunnerOutput, error) {
	x.mu.Lock()
	for _, r := range out.NewRequests {
		x.params = append(x.params, *r.Params)
	}
	x.mu.Unlock()
	return x.FakeExecutor.Execute(out)
}

// TestModelSamplingDefaults: the model's sampling defaults (its
// generation_config.json) apply to the parameters a request leaves unset,
// and max_new_tokens caps the default max_tokens; a request's own values
// win.
func TestModelSamplingDefaults(t *testing.T) {
	f, i := func(v float64) *float64 { return &v }, func(v int) *int { return &v }
	rec := &paramsRecorder{FakeExecutor: enginetest.FakeExecutor{Next: letters}}
	h := newHarness(t, harnessOpts{exec: rec, defaults: server.SamplingDefaults{Temperature: f(0.6), TopP: f(0.9),
		MinP: f(0.05), RepetitionPenalty: f(1.1), TopK: i(20), MaxTokens: i(5)}})
	m := h.post("/v1/completions", map[string]any{"prompt": "x"}, 200)
	assert.Equal(t, "abcde", m["choices"].([]any)[0].(map[string]any)["text"], "max_new_tokens caps the default max_tokens")
	h.post("/v1/completions", map[string]any{"prompt": "x", "temperature": 0, "top_p": 1, "top_k": -1, "min_p": 0,
		"repetition_penalty": 1, "max_tokens": 7}, 200)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.params, 2)
	got := func(p scheduler.SamplingParams) []any {
		return []any{p.Temperature, p.TopP, p.TopK, p.MinP, p.RepetitionPenalty, p.MaxTokens}
	}
	assert.Equal(t, []any{float32(0.6), float32(0.9), 20, float32(0.05), float32(1.1), 5}, got(rec.params[0]), "the model's defaults")
	assert.Equal(t, []any{float32(0), float32(1), 0, float32(0), float32(1), 7}, got(rec.params[1]), "the request's values")
}

// TestLenientAsVLLM: values vLLM accepts are accepted: chat top_logprobs 0
// without logprobs, and logit_bias beyond ±100 (clamped).
func TestLenientAsVLLM(t *testing.T) {
	rec := &paramsRecorder{FakeExecutor: enginetest.FakeExecutor{Next: letters}}
	h := newHarness(t, harnessOpts{exec: rec})
	h.post("/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "top_logprobs": 0, "max_tokens": 1}, 200)
	h.post("/v1/completions", map[string]any{"prompt": "x", "logit_bias": map[string]any{"100": 250, "101": -1e6}, "max_tokens": 1}, 200)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.params, 2)
	assert.Equal(t, map[int32]float32{100: 100, 101: -100}, rec.params[1].LogitBias)
}

// TestUnsupportedFieldsThatAskForNothing: the values of the unsupported
// fields that ask for nothing are served.
func TestUnsupportedFieldsThatAskForNothing(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	msgs := []map[string]any{{"role": "user", "content": "x"}}
	for _, extra := range []map[string]any{
		{"response_format": map[string]any{"type": "text"}},
		{"tool_choice": "none"},
		{"tools": []any{}, "tool_choice": "auto"},
		{"guided_json": nil},
	} {
		body := map[string]any{"messages": msgs, "max_tokens": 2}
		for k, v := range extra {
			body[k] = v
		}
		h.post("/v1/chat/completions", body, 200)
	}
}

func TestDefaultMaxTokensFillsContext(t *testing.T) {
	h := newHarness(t, harnessOpts{maxModelLen: 32})
	m := h.post("/v1/completions", map[string]any{"prompt": "abc"}, 200)
	c := m["choices"].([]any)[0].(map[string]any)
	assert.Equal(t, "length", c["finish_reason"])
	assert.Len(t, c["text"], 32-4)
}

func TestAPIKey(t *testing.T) {
	h := newHarness(t, harnessOpts{server: server.Options{APIKey: "sekret"}})
	resp := h.do("GET", "/health", nil)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, "health is public")
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "sekret"}} {
		resp = h.do("POST", "/v1/completions", map[string]any{"prompt": "x", "max_tokens": 1}, hdr...)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, 401, resp.StatusCode)
		assert.Contains(t, string(body), "invalid_api_key")
	}
	resp = h.do("POST", "/v1/completions", map[string]any{"prompt": "x", "max_tokens": 1}, "Authorization", "Bearer sekret")
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	resp = h.do("GET", "/v1/models", nil, "Authorization", "Bearer sekret")
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

func TestCORS(t *testing.T) {
	h := newHarness(t, harnessOpts{server: server.Options{AllowedOrigins: []string{"https://app.example"}}})
	resp := h.do("OPTIONS", "/v1/chat/completions", nil, "Origin", "https://app.example", "Access-Control-Request-Method", "POST")
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, "https://app.example", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), "Authorization")
	resp = h.do("GET", "/v1/models", nil, "Origin", "https://evil.example")
	resp.Body.Close()
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))

	// As with vLLM's default (--allowed-headers '*'), a preflight may ask
	// for any header, such as the OpenAI SDK's X-Stainless-*.
	resp = h.do("OPTIONS", "/v1/chat/completions", nil, "Origin", "https://app.example", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "content-type,authorization,x-stainless-os")
	resp.Body.Close()
	assert.Equal(t, "content-type,authorization,x-stainless-os", resp.Header.Get("Access-Control-Allow-Headers"))
	assert.Contains(t, resp.Header.Values("Vary"), "Access-Control-Request-Headers")

	// Explicit lists are sent as they are.
	h = newHarness(t, harnessOpts{server: server.Options{AllowedMethods: []string{"POST"}, AllowedHeaders: []string{"Authorization", "Content-Type"}}})
	resp = h.do("OPTIONS", "/v1/completions", nil, "Origin", "https://any.example", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "x-stainless-os")
	resp.Body.Close()
	assert.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "POST", resp.Header.Get("Access-Control-Allow-Methods"))
	assert.Equal(t, "Authorization, Content-Type", resp.Header.Get("Access-Control-Allow-Headers"))
}

func TestRequestTimeout(t *testing.T) {
	h := newHarness(t, harnessOpts{maxModelLen: 1 << 16, numBlocks: 1<<12 + 8})
	m := h.post("/v1/completions", map[string]any{"prompt": "x", "max_tokens": 60000, "timeout": 0.001}, http.StatusRequestTimeout)
	assert.Equal(t, "timeout_error", m["error"].(map[string]any)["type"])
	events, done := h.sse("/v1/completions", map[string]any{"prompt": "x", "max_tokens": 60000, "timeout": 0.001, "stream": true})
	assert.True(t, done)
	require.NotEmpty(t, events)
	assert.Contains(t, events[len(events)-1], "error")
	st := h.settle()
	assert.Equal(t, st.KVBlocksTotal, st.KVBlocksFree)
}

func TestQueueFull429(t *testing.T) {
	exec := &gatedExec{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	h := newHarness(t, harnessOpts{engine: engine.Config{MaxQueuedRequests: 1}, maxNumSeqs: 1, exec: exec})
	statuses := make(chan int, 2)
	post := func(p string) {
		resp := h.do("POST", "/v1/completions", map[string]any{"prompt": p, "max_tokens": 2})
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses <- resp.StatusCode
	}
	go post("x")
	<-exec.entered // the loop is inside step 1, holding request x
	go post("y")
	require.Eventually(t, func() bool { return h.eng.Snapshot().NumQueued == 1 }, 60e9, 1e6)
	resp := h.do("POST", "/v1/completions", map[string]any{"prompt": "z", "max_tokens": 2})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Contains(t, string(body), "queue_full")
	close(exec.gate)
	for range 2 {
		assert.Equal(t, 200, <-statuses)
	}
}

// gatedExec signals entered on each step and blocks until gate is closed.
type gatedExec struct {
	enginetest.FakeExecutor
	gate    chan struct{}
	entered chan struct{}
}

func (g *gatedExec) Execute(out *scheduler.Output) (*scheduler.RunnerOutput, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
	return g.FakeExecutor.Execute(out)
}

func TestCachedTokensReported(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	body := map[string]any{"prompt": strings.Repeat("a long shared prefix ", 3), "max_tokens": 2} // 1+63 tokens
	first := h.post("/v1/completions", body, 200)
	assert.Equal(t, 0.0, first["usage"].(map[string]any)["prompt_tokens_details"].(map[string]any)["cached_tokens"])
	second := h.post("/v1/completions", body, 200)
	assert.Equal(t, 48.0, second["usage"].(map[string]any)["prompt_tokens_details"].(map[string]any)["cached_tokens"],
		"three full 16-token blocks hit; the last prompt token is always recomputed")
}

func TestMethodNotAllowed(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, path := range []string{"/v1/completions", "/v1/chat/completions", "/tokenize"} {
		resp := h.do("GET", path, nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, path)
		assert.Equal(t, "POST", resp.Header.Get("Allow"), path)
		assert.Contains(t, string(body), `"error"`)
	}
	resp := h.do("POST", "/v1/models", nil)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
	resp = h.do("GET", "/nope", nil)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// TestChatStopReason checks vLLM's stop_reason on chat choices: the stop
// string or stop token id that ended a choice, null for EOS and length. A
// stream carries it on the chunk with the finish reason only.
func TestChatStopReason(t *testing.T) {
	eosAfterThree := func(id string, prompt, outputs []int32) int32 {
		if len(outputs) == 3 {
			return eosID
		}
		return letters(id, prompt, outputs)
	}
	h := newHarness(t, harnessOpts{exec: &enginetest.FakeExecutor{Next: eosAfterThree}})
	tests := []struct {
		name   string
		body   map[string]any
		text   string
		finish string
		reason any // as JSON decodes it
	}{
		{"eos", nil, "abc", "stop", nil},
		{"stop string", map[string]any{"stop": []string{"zz", "b"}}, "a", "stop", "b"},
		{"stop token id", map[string]any{"stop_token_ids": []int{101}}, "a", "stop", 101.0},
		{"eos listed as a stop token id is still eos", map[string]any{"stop_token_ids": []int{eosID}}, "abc", "stop", nil},
		{"ignore eos", map[string]any{"ignore_eos": true, "max_tokens": 5}, "abce", "length", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"messages": []map[string]any{{"role": "user", "content": "hi"}}, "max_tokens": 10,
				"skip_special_tokens": false}
			for k, v := range tc.body {
				body[k] = v
			}
			m := h.post("/v1/chat/completions", body, 200)
			c := m["choices"].([]any)[0].(map[string]any)
			assert.Equal(t, tc.text, c["message"].(map[string]any)["content"])
			assert.Equal(t, tc.finish, c["finish_reason"])
			reason, ok := c["stop_reason"]
			assert.True(t, ok, "stop_reason is always present")
			assert.Equal(t, tc.reason, reason)

			body["stream"] = true
			events, done := h.sse("/v1/chat/completions", body)
			require.True(t, done)
			finals := 0
			for _, e := range events {
				cm := e["choices"].([]any)[0].(map[string]any)
				reason, ok := cm["stop_reason"]
				if cm["finish_reason"] == nil {
					assert.False(t, ok, "stop_reason only with the finish reason")
					continue
				}
				finals++
				assert.Equal(t, tc.finish, cm["finish_reason"])
				assert.True(t, ok, "stop_reason comes with the finish reason")
				assert.Equal(t, tc.reason, reason)
			}
			assert.Equal(t, 1, finals)
		})
	}
}

// TestGenerationsPerRequestAreBounded: prompts × n beyond what the engine
// can queue at once (or beyond maxGenerations when its queue is unbounded)
// is refused with a 400 before anything is allocated per generation or
// started in the engine.
func TestGenerationsPerRequestAreBounded(t *testing.T) {
	var ends atomic.Int64
	for _, tc := range []struct {
		name    string
		queue   int
		prompts int
		n       int
		status  int
	}{
		{"within the queue bound", 8, 4, 2, 200},
		{"past the queue bound", 8, 3, 3, 400},
		{"unbounded queue, within the cap", 0, 64, 64, 200},
		{"unbounded queue, past the cap", 0, 4097, 1, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{engine: engine.Config{MaxQueuedRequests: tc.queue,
				Hooks: engine.Hooks{OnRequestEnd: func(engine.RequestEnd) { ends.Add(1) }}}, maxNumSeqs: 256})
			prompts := make([][]int, tc.prompts)
			for i := range prompts {
				prompts[i] = []int{100 + i%20}
			}
			ends.Store(0)
			m := h.post("/v1/completions", map[string]any{"prompt": prompts, "n": tc.n, "max_tokens": 1}, tc.status)
			if tc.status == 400 {
				e := m["error"].(map[string]any)
				assert.Equal(t, "n", e["param"])
				assert.Contains(t, e["message"], fmt.Sprintf("asks for %d generations", tc.prompts*tc.n))
				h.settle()
				assert.Zero(t, ends.Load(), "nothing was started in the engine")
				return
			}
			assert.Len(t, m["choices"], tc.prompts*tc.n)
		})
	}
}

// brokenLogprobs reports NaN and -Inf logprobs, as broken numerics would.
type brokenLogprobs struct{ enginetest.FakeExecutor }

func (x *brokenLogprobs) Execute(out *scheduler.Output) (*scheduler.RunnerOutput, error) {
	ro, err := x.FakeExecutor.Execute(out)
	if ro != nil {
		for _, lps := range ro.Logprobs {
			for i := range lps {
				lps[i].Logprob = float32(math.NaN())
				lps[i].Top = []scheduler.TopLogprob{{TokenID: 120, Logprob: float32(math.Inf(-1))}}
			}
		}
	}
	return ro, err
}

// TestLogprobsThatJSONCannotCarry: -Inf and NaN logprobs are sent as -9999
// (vLLM's floor) in chat and completions, streaming and not, instead of
// breaking the JSON encoding of the response.
func TestLogprobsThatJSONCannotCarry(t *testing.T) {
	h := newHarness(t, harnessOpts{exec: &brokenLogprobs{enginetest.FakeExecutor{Next: letters}}})
	m := h.post("/v1/completions", map[string]any{"prompt": "x", "max_tokens": 1, "logprobs": 1}, 200)
	lp := m["choices"].([]any)[0].(map[string]any)["logprobs"].(map[string]any)
	assert.Equal(t, []any{-9999.0}, lp["token_logprobs"])
	assert.Equal(t, map[string]any{"u": -9999.0, "a": -9999.0}, lp["top_logprobs"].([]any)[0])
	chat := map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "max_tokens": 1,
		"logprobs": true, "top_logprobs": 1}
	m = h.post("/v1/chat/completions", chat, 200)
	content := m["choices"].([]any)[0].(map[string]any)["logprobs"].(map[string]any)["content"].([]any)[0].(map[string]any)
	assert.Equal(t, -9999.0, content["logprob"])
	assert.Equal(t, -9999.0, content["top_logprobs"].([]any)[0].(map[string]any)["logprob"])
	chat["stream"] = true
	events, done := h.sse("/v1/chat/completions", chat)
	require.True(t, done)
	found := false
	for _, e := range events {
		if lps, ok := e["choices"].([]any)[0].(map[string]any)["logprobs"].(map[string]any); ok {
			found = true
			assert.Equal(t, -9999.0, lps["content"].([]any)[0].(map[string]any)["logprob"])
		}
	}
	assert.True(t, found)
}

// TestKeysAreCaseSensitive: as in vLLM (pydantic), a key names a field
// only as written; one in another case is an unknown key and ignored,
// where Go's encoding/json would bind it.
func TestKeysAreCaseSensitive(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	m := h.post("/v1/completions", map[string]any{"prompt": "x", "max_tokens": 2, "MAX_TOKENS": 5, "Stream": true}, 200)
	assert.Equal(t, "text_completion", m["object"], "not streamed")
	assert.Equal(t, 2.0, m["usage"].(map[string]any)["completion_tokens"])
	m = h.post("/v1/completions", map[string]any{"PROMPT": "x", "max_tokens": 2}, 400)
	assert.Equal(t, "prompt", m["error"].(map[string]any)["param"])
	m = h.post("/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}},
		"max_tokens": 1, "Temperature": "hot"}, 200)
	assert.Equal(t, "chat.completion", m["object"], "an unknown key's value is never read")
}
