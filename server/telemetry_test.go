package server_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/server"
)

// recorder is a Telemetry that records every span's calls.
type recorder struct {
	mu    sync.Mutex
	spans []*recSpan
}

type recSpan struct {
	mu      sync.Mutex
	route   string
	events  []string
	info    server.RequestInfo
	out     server.Outcome
	reason  string
	handoff time.Time
}

func (r *recorder) Arrived(_ *http.Request, route string) server.RequestSpan {
	s := &recSpan{route: route, events: []string{"ARRIVED"}}
	r.mu.Lock()
	r.spans = append(r.spans, s)
	r.mu.Unlock()
	return s
}

func (s *recSpan) add(e string) { s.mu.Lock(); s.events = append(s.events, e); s.mu.Unlock() }
func (s *recSpan) Parsed(info server.RequestInfo) {
	s.mu.Lock()
	s.info = info
	s.mu.Unlock()
	s.add("PARSED")
}
func (s *recSpan) TraceHeaders() map[string]string {
	return map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
}
func (s *recSpan) HandoffToCore(at time.Time) {
	s.mu.Lock()
	s.handoff = at
	s.mu.Unlock()
	s.add("HANDOFF")
}
func (s *recSpan) FirstResponseFromCore(time.Time) { s.add("FIRST") }
func (s *recSpan) Departed(o server.Outcome) {
	s.mu.Lock()
	s.out = o
	s.mu.Unlock()
	s.add("DEPARTED")
}
func (s *recSpan) Aborted(reason string, _ error) {
	s.mu.Lock()
	s.reason = reason
	s.mu.Unlock()
	s.add("ABORTED")
}
func (s *recSpan) End() { s.add("END") }

func (r *recorder) last() *recSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spans[len(r.spans)-1]
}

func (s *recSpan) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

func TestTelemetryLifecycle(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, harnessOpts{server: server.Options{Telemetry: rec}})
	tests := []struct {
		name   string
		path   string
		body   any
		status int
		want   []string
		reason string
	}{
		{"completion", "/v1/completions", map[string]any{"prompt": "x", "max_tokens": 3, "temperature": 0.5}, 200,
			[]string{"ARRIVED", "PARSED", "HANDOFF", "FIRST", "DEPARTED", "END"}, ""},
		{"chat", "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "x"}}, "max_tokens": 2}, 200,
			[]string{"ARRIVED", "PARSED", "HANDOFF", "FIRST", "DEPARTED", "END"}, ""},
		{"malformed", "/v1/completions", `{`, 400, []string{"ARRIVED", "ABORTED", "END"}, server.ReasonValidation},
		{"context length", "/v1/completions", map[string]any{"prompt": "x", "max_tokens": 1000}, 400,
			[]string{"ARRIVED", "PARSED", "ABORTED", "END"}, server.ReasonValidation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.post(tc.path, tc.body, tc.status)
			s := rec.last()
			assert.Equal(t, tc.want, s.snapshot())
			assert.Equal(t, tc.reason, s.reason)
		})
	}
	s := rec.spans[0]
	assert.Equal(t, "/v1/completions", s.route)
	assert.Equal(t, 3, s.out.CompletionTokens)
	assert.Equal(t, 2, s.info.PromptTokens)
	require.NotNil(t, s.info.Temperature)
	assert.Equal(t, 0.5, *s.info.Temperature)
	assert.Nil(t, s.info.N, "n unset")
	assert.Equal(t, 1, s.info.NumChoices())
	assert.False(t, s.out.Times.FirstToken.IsZero())
	assert.Positive(t, s.out.Times.E2E())
	assert.False(t, s.handoff.IsZero())
	assert.False(t, s.handoff.After(s.out.Times.Arrival), "the handoff began before the engine took the request")

	// Streaming: DEPARTED before [DONE].
	events, done := h.sse("/v1/completions", map[string]any{"prompt": "x", "max_tokens": 3, "stream": true})
	require.True(t, done)
	require.NotEmpty(t, events)
	assert.Equal(t, []string{"ARRIVED", "PARSED", "HANDOFF", "FIRST", "DEPARTED", "END"}, rec.last().snapshot())
}

// TestUnavailableReasons: a 503 while the model loads is aborted as
// model_loading, one while the server shuts down as shutdown.
func TestUnavailableReasons(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, harnessOpts{noModel: true, server: server.Options{Telemetry: rec}})
	h.post("/v1/completions", map[string]any{"prompt": "x", "max_tokens": 1}, http.StatusServiceUnavailable)
	assert.Equal(t, []string{"ARRIVED", "ABORTED", "END"}, rec.last().snapshot())
	assert.Equal(t, server.ReasonModelLoading, rec.last().reason)
	h.setModel(256)
	h.post("/v1/completions", map[string]any{"prompt": "x", "max_tokens": 1, "n": 2}, http.StatusOK)
	require.NotNil(t, rec.last().info.N)
	assert.Equal(t, 2, *rec.last().info.N)
	h.srv.SetClosing()
	h.post("/v1/completions", map[string]any{"prompt": "x", "max_tokens": 1}, http.StatusServiceUnavailable)
	assert.Equal(t, server.ReasonShutdown, rec.last().reason)
}

// TestClientGoneNonStreaming: a client that hangs up while waiting for a
// non-streaming answer aborts its request in the engine.
func TestClientGoneNonStreaming(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, harnessOpts{server: server.Options{Telemetry: rec}, maxModelLen: 1 << 14, numBlocks: 1100})
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "POST", h.http.URL+"/v1/completions",
		strings.NewReader(`{"prompt":"x","max_tokens":16000,"ignore_eos":true}`))
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() {
		resp, err := h.http.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	require.Eventually(t, func() bool { return h.eng.Snapshot().Stats.NumRunning == 1 }, 60e9, 1e6)
	cancel()
	require.Error(t, <-errc)
	st := h.settle()
	assert.Equal(t, st.KVBlocksTotal, st.KVBlocksFree)
	require.Eventually(t, func() bool { ev := rec.last().snapshot(); return ev[len(ev)-1] == "END" }, 60e9, 1e6)
	ev := rec.last().snapshot()
	assert.Equal(t, []string{"ARRIVED", "PARSED", "HANDOFF"}, ev[:3])
	assert.Equal(t, []string{"ABORTED", "END"}, ev[len(ev)-2:])
	assert.Equal(t, server.ReasonClientDisconnect, rec.last().reason)
}
