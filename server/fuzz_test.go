package server_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzRequestBodies feeds arbitrary bodies to the generation and tokenizer
// routes: every answer must be 200 with a response body or an OpenAI error
// body with a 4xx status, and nothing may stay in the engine.
func FuzzRequestBodies(f *testing.F) {
	seeds := []string{
		`{"prompt":"hi","max_tokens":3}`,
		`{"prompt":["a","b"],"n":2,"max_tokens":2,"stop":"b","logprobs":1}`,
		`{"prompt":[1,2,3],"echo":true,"max_tokens":1}`,
		`{"prompt":[[1],[2,3]],"stream":true,"stream_options":{"include_usage":true},"max_tokens":2}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"logprobs":true,"top_logprobs":2,"max_tokens":2}`,
		`{"prompt":"x","logit_bias":{"5":100},"stop_token_ids":[7],"min_tokens":1,"max_tokens":2}`,
		`{"prompt":"x","temperature":1e309}`, `{"prompt":null}`, `[]`, `{"messages":null}`, `{"prompt":"x","n":1e9}`,
	}
	for _, s := range seeds {
		f.Add("/v1/completions", s)
		f.Add("/v1/chat/completions", s)
		f.Add("/tokenize", s)
	}
	h := newHarness(f, harnessOpts{maxModelLen: 64})
	f.Fuzz(func(t *testing.T, path, body string) {
		switch path {
		case "/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize":
		default:
			path = "/v1/completions"
		}
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		w := httptest.NewRecorder()
		stuck := time.AfterFunc(20*time.Second, func() { panic(fmt.Sprintf("request stuck: %s %q", path, body)) })
		h.srv.ServeHTTP(w, req)
		stuck.Stop()
		if w.Code == 200 {
			if w.Header().Get("Content-Type") == "text/event-stream" {
				if !strings.HasSuffix(w.Body.String(), "data: [DONE]\n\n") {
					t.Fatalf("stream without [DONE]: %q", w.Body.String())
				}
				return
			}
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("200 with invalid JSON: %q", w.Body.String())
			}
			return
		}
		if w.Code < 400 || w.Code >= 500 {
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body.String())
		}
		var e struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Fatalf("status %d without an OpenAI error body: %q", w.Code, w.Body.String())
		}
	})
}
