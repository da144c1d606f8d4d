package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/engine/enginetest"
	"github.com/vserve/vserve/scheduler"
)

// lockstepExec is a zero-time model that starts a step only once every
// token of the previous steps has reached its client, so each token travels
// alone (one SSE event per token, no coalescing): the step time is then the
// serving overhead of one token on every connection.
type lockstepExec struct {
	enginetest.FakeExecutor
	mu       sync.Mutex
	cond     *sync.Cond
	produced int64
	received int64
	stalls   int
}

func newLockstep() *lockstepExec {
	l := &lockstepExec{FakeExecutor: enginetest.FakeExecutor{Next: letters}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *lockstepExec) Execute(out *scheduler.Output) (*scheduler.RunnerOutput, error) {
	l.mu.Lock()
	deadline := time.Now().Add(2 * time.Second) // a safety net, never expected to trigger
	for l.received < l.produced && time.Now().Before(deadline) {
		waitTimeout(l.cond, 100*time.Millisecond)
	}
	if l.received < l.produced {
		l.stalls++
		l.received = l.produced
	}
	l.mu.Unlock()
	ro, err := l.FakeExecutor.Execute(out)
	if err == nil {
		l.mu.Lock()
		l.produced += int64(len(ro.ReqIDs))
		l.mu.Unlock()
	}
	return ro, err
}

func (l *lockstepExec) got(n int64) {
	l.mu.Lock()
	l.received += n
	l.mu.Unlock()
	l.cond.Broadcast()
}

func waitTimeout(c *sync.Cond, d time.Duration) {
	t := time.AfterFunc(d, c.Broadcast)
	c.Wait()
	t.Stop()
}

// BenchmarkSSEOverhead measures everything around the model (HTTP, SSE,
// JSON, detokenisation, stop matching, the engine loop and the scheduler)
// with a fake model that takes no time: 256 connections each stream 128
// tokens per iteration, with the clients in the same process (their cost
// is included).
//
//   - lockstep: one SSE event per token (the model waits for delivery).
//   - coalescing: the model runs free; slow readers get several tokens per
//     event, as in production when the model outpaces the network.
//
// Metrics: us/token is the wall time divided by the tokens delivered over
// all connections (the serving cost of one token on one connection, the
// figure the 50 us target is about); us/round is the wall time per token
// position, i.e. for one token on each of the 256 connections (the step
// time as a client sees it); events/token is SSE events per token.
func BenchmarkSSEOverhead(b *testing.B) {
	b.Run("lockstep", func(b *testing.B) { benchSSE(b, newLockstep()) })
	b.Run("coalescing", func(b *testing.B) { benchSSE(b, nil) })
}

func benchSSE(b *testing.B, ls *lockstepExec) {
	const conns, tokens = 256, 128
	var exec engine.Executor
	if ls != nil {
		exec = ls
	}
	h := newHarness(b, harnessOpts{maxModelLen: 1024, numBlocks: conns*16 + 64, maxNumSeqs: conns, exec: exec})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(map[string]any{"prompt": "benchmark", "max_tokens": tokens, "ignore_eos": true, "stream": true})
	var mu sync.Mutex
	var events, toks int64
	stream := func() {
		resp, err := client.Post(h.http.URL+"/v1/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Error(err)
			return
		}
		defer resp.Body.Close()
		n := int64(0)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Bytes()
			if len(line) == 0 || bytes.Equal(line, []byte("data: [DONE]")) {
				continue
			}
			n++
			if ls != nil {
				ls.got(1)
			}
		}
		mu.Lock()
		events += n
		toks += tokens
		mu.Unlock()
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		var wg sync.WaitGroup
		for range conns {
			wg.Add(1)
			go func() { defer wg.Done(); stream() }()
		}
		wg.Wait()
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(el.Nanoseconds())/1e3/float64(toks), "us/token")
	b.ReportMetric(float64(el.Nanoseconds())/1e3/float64(b.N*tokens), "us/round")
	b.ReportMetric(float64(events)/float64(toks), "events/token")
	b.ReportMetric(0, "ns/op")
	if ls != nil && ls.stalls > 0 {
		b.Logf("lockstep: %d stalls (tokens coalesced)", ls.stalls)
	}
}
