package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/engine/enginetest"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
)

// Serving an engine over the OpenAI API: make the server (it answers 503
// until SetModel), start the engine, and hand both to SetModel. Here the
// model is a fake that writes "abcd..." and the tokenizer is byte-level.
func Example() {
	srv := server.New(server.Options{})
	sched, err := scheduler.New(scheduler.Config{MaxModelLen: 128, NumBlocks: 64, BlockSize: 16})
	if err != nil {
		panic(err)
	}
	eng := engine.New(engine.Config{}, sched, &enginetest.FakeExecutor{})
	defer eng.Shutdown(context.Background())
	srv.SetModel(&server.Model{Engine: eng, Tokenizer: byteTokenizer{}, Names: []string{"demo"}, MaxModelLen: 128})

	ts := httptest.NewServer(srv)
	defer ts.Close()
	resp, err := http.Post(ts.URL+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"demo","prompt":"hi","max_tokens":4,"stop":["d"]}`))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, strings.Contains(string(body), `"text":"abc","logprobs":null,"finish_reason":"stop"`))
	// Output: 200 true
}
