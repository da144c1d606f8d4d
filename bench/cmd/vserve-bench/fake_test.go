package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// letterTok is a tokenizer whose tokens are the letters a..z (ids 2..27);
// ids 0 and 1 are special.
type letterTok struct{}

func (letterTok) Encode(s string, _ bool) []int32 {
	ids := make([]int32, 0, len(s))
	for _, r := range s {
		ids = append(ids, int32(r-'a')+2)
	}
	return ids
}

func (letterTok) Decode(ids []int32, skip bool) string {
	var b strings.Builder
	for _, id := range ids {
		if id >= 2 {
			b.WriteRune(rune(id-2) + 'a')
		}
	}
	return b.String()
}

func (letterTok) VocabSize() int          { return 28 }
func (letterTok) IsSpecial(id int32) bool { return id < 2 }

// fakeServer is an OpenAI-compatible completions server that streams one
// "a" per requested token with a usage chunk, records the prompts it gets,
// and exposes on /metrics, as vllm:num_preemptions_total, the number of
// completions it has finished (to tell which requests a counter difference
// covers).
type fakeServer struct {
	*httptest.Server
	mu      sync.Mutex
	prompts []string // the "prompt" of each completion request, as JSON
	done    atomic.Int64
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/models":
			io.WriteString(w, `{"object":"list","data":[{"id":"m"}]}`)
		case "/metrics":
			fmt.Fprintf(w, "# TYPE vllm:num_preemptions_total counter\nvllm:num_preemptions_total{engine=\"0\"} %d\n", f.done.Load())
		case "/v1/completions":
			var req struct {
				Prompt    json.RawMessage `json:"prompt"`
				MaxTokens int             `json:"max_tokens"`
			}
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			f.mu.Lock()
			f.prompts = append(f.prompts, string(req.Prompt))
			f.mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			for range req.MaxTokens {
				io.WriteString(w, "data: {\"choices\":[{\"text\":\"a\"}]}\n\n")
			}
			fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":%d}}\n\ndata: [DONE]\n\n", req.MaxTokens)
			f.done.Add(1)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// received returns the prompts received so far.
func (f *fakeServer) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.prompts)
}
