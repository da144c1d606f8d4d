package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/engine/enginetest"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
)

// holdExec blocks every step until release is closed.
type holdExec struct {
	enginetest.FakeExecutor
	release chan struct{}
}

func (h *holdExec) Execute(out *scheduler.Output) (*scheduler.RunnerOutput, error) {
	<-h.release
	return h.FakeExecutor.Execute(out)
}

// TestDisconnectMidStream: 1000 streaming clients each read their first
// token and hang up. Every request must end aborted (client_disconnect) and
// every KV block must be free afterwards.
func TestDisconnectMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("1000 connections")
	}
	const clients = 1000
	var mu sync.Mutex
	causes := map[string]int{}
	cfg := engine.Config{Hooks: engine.Hooks{OnRequestEnd: func(e engine.RequestEnd) {
		mu.Lock()
		causes[string(e.Reason)+"/"+e.AbortCause]++
		mu.Unlock()
	}}}
	exec := &holdExec{release: make(chan struct{}), FakeExecutor: enginetest.FakeExecutor{Next: letters}}
	h := newHarness(t, harnessOpts{engine: cfg, exec: exec, maxModelLen: 1 << 14, numBlocks: 1 << 17, maxNumSeqs: 1024})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(map[string]any{"prompt": "hi", "max_tokens": 1<<14 - 8, "stream": true, "ignore_eos": true})
	var wg sync.WaitGroup
	var gotToken atomic.Int64
	t0 := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post(h.http.URL+"/v1/completions", "application/json", bytes.NewReader(body))
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close() // hang up mid-stream
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if strings.Contains(sc.Text(), `"text":"a`) { // the first token chunk (maybe coalesced)
					gotToken.Add(1)
					return
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return h.eng.Snapshot().NumActive == clients }, 60e9, 1e6)
	t.Log("all in", time.Since(t0))
	close(exec.release) // all are in; let the model run
	wg.Wait()
	t.Log("clients done", time.Since(t0))
	assert.Equal(t, int64(clients), gotToken.Load(), "every client saw a token before hanging up")
	st := h.settle()
	t.Log("settled", time.Since(t0))
	assert.Equal(t, st.KVBlocksTotal, st.KVBlocksFree, "all KV blocks free")
	assert.Zero(t, h.sched.NumRunning()+h.sched.NumWaiting())
	require.Eventually(t, func() bool { // an end hook runs just after its request left the engine
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range causes {
			n += c
		}
		return n == clients
	}, 60e9, 1e6)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{"abort/" + engine.CauseClientDisconnect: clients}, causes)
}

// TestBurst: thousands of requests at once against a queue bound. None may
// crash the server; those past the bound get 429 with Retry-After; the rest
// complete.
func TestBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("thousands of requests")
	}
	const requests, bound = 3000, 200
	exec := &holdExec{release: make(chan struct{}), FakeExecutor: enginetest.FakeExecutor{Next: letters}}
	h := newHarness(t, harnessOpts{engine: engine.Config{MaxQueuedRequests: bound}, exec: exec, maxNumSeqs: 64})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	defer client.CloseIdleConnections()
	var ok, full, other atomic.Int64
	var wg sync.WaitGroup
	for range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post(h.http.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"burst","max_tokens":4}`))
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusTooManyRequests:
				assert.Equal(t, "1", resp.Header.Get("Retry-After"))
				full.Add(1)
				io.Copy(io.Discard, resp.Body)
				return
			case http.StatusOK:
				ok.Add(1)
			default:
				other.Add(1)
			}
			io.Copy(io.Discard, resp.Body)
		}()
	}
	// Every request is either queued in the engine or refused.
	require.Eventually(t, func() bool { return int64(h.eng.Snapshot().NumActive)+full.Load() == requests }, 60e9, 1e6)
	accepted := h.eng.Snapshot().NumActive
	assert.LessOrEqual(t, accepted, bound+64, "at most the queue bound plus one step's admissions")
	assert.Positive(t, full.Load(), "429s past the bound")
	close(exec.release)
	wg.Wait()
	assert.Equal(t, int64(accepted), ok.Load())
	assert.Zero(t, other.Load())
	st := h.settle()
	assert.Equal(t, st.KVBlocksTotal, st.KVBlocksFree)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("burst of %d: %d accepted, %d refused (429); heap in use after: %d MiB", requests, accepted, full.Load(), ms.HeapInuse>>20)
}

// TestChatRoleChunkComesWithTheFirstToken: as in vLLM, a streamed chat's
// first chunk (the role) goes out only with the request's first output, so
// time to first chunk is time to first token. Here the step never runs and
// the client goes away: the headers went out, no chunk did.
func TestChatRoleChunkComesWithTheFirstToken(t *testing.T) {
	exec := &holdExec{release: make(chan struct{}), FakeExecutor: enginetest.FakeExecutor{Next: letters}}
	h := newHarness(t, harnessOpts{exec: exec})
	defer close(exec.release) // after the handler returned: let the engine shut down
	body, _ := json.Marshal(map[string]any{"messages": []map[string]any{{"role": "user", "content": "hi"}},
		"max_tokens": 2, "stream": true})
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "POST", "/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	served := make(chan struct{})
	go func() {
		defer close(served)
		h.srv.ServeHTTP(rec, req)
	}()
	require.Eventually(t, func() bool { return h.eng.Snapshot().NumActive == 1 }, 60e9, 1e6)
	cancel() // the client hangs up before the first token
	<-served
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "text/event-stream", rec.Header().Get("Content-Type"))
	assert.True(t, rec.Flushed, "the headers went out at once")
	assert.Empty(t, rec.Body.String(), "no chunk before the first token")
}

// slowExec takes a millisecond per step, like a (very) small model.
type slowExec struct{ enginetest.FakeExecutor }

func (e *slowExec) Execute(out *scheduler.Output) (*scheduler.RunnerOutput, error) {
	time.Sleep(time.Millisecond)
	return e.FakeExecutor.Execute(out)
}

// TestStalledBodyTimesOut: a client that sends its headers and part of the
// body, then stalls, gets a 408 once BodyReadTimeout passed. A request
// whose body arrived in time is not ended by that deadline, and it still
// notices its client going away later and is aborted.
func TestStalledBodyTimesOut(t *testing.T) {
	const timeout = 100 * time.Millisecond
	var mu sync.Mutex
	causes := map[string]int{}
	h := newHarness(t, harnessOpts{server: server.Options{BodyReadTimeout: timeout}, exec: &slowExec{enginetest.FakeExecutor{Next: letters}},
		maxModelLen: 1 << 16, numBlocks: 1<<12 + 8, engine: engine.Config{Hooks: engine.Hooks{OnRequestEnd: func(e engine.RequestEnd) {
			mu.Lock()
			causes[string(e.Reason)+"/"+e.AbortCause]++
			mu.Unlock()
		}}}})

	conn, err := net.Dial("tcp", h.http.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: 100\r\n\r\n{\"prompt\": ")
	require.NoError(t, err)
	status, err := bufio.NewReader(conn).ReadString('\n') // blocks until the server answers
	require.NoError(t, err)
	assert.Equal(t, "HTTP/1.1 408 Request Timeout\r\n", status)

	// A minute-long request; its client hangs up well after the deadline.
	ctx, cancel := context.WithCancel(context.Background())
	body, _ := json.Marshal(map[string]any{"prompt": "hi", "max_tokens": 60000, "ignore_eos": true})
	req, _ := http.NewRequestWithContext(ctx, "POST", h.http.URL+"/v1/completions", bytes.NewReader(body))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	require.Eventually(t, func() bool { return h.eng.Snapshot().NumActive == 1 }, time.Minute, time.Millisecond)
	time.Sleep(3 * timeout) // past the body deadline
	mu.Lock()
	assert.Empty(t, causes, "the deadline did not end the request")
	mu.Unlock()
	cancel()
	<-done
	require.Eventually(t, func() bool { // the end hook runs after the request left the engine
		mu.Lock()
		defer mu.Unlock()
		return len(causes) > 0
	}, 30*time.Second, time.Millisecond, "the request was aborted when its client went away")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{"abort/" + engine.CauseClientDisconnect: 1}, causes)
}
