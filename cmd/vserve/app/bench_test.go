package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vserve/vserve/runtime/model"
)

// BenchmarkServe measures end-to-end serving through the HTTP API:
// streaming completions of 128 tokens (ignore_eos) at concurrency 1, 4 and
// 16, on a generated random-weight model. VSERVE_BENCH_SPEC selects the
// model shape (default "tiny"; "110M" is the TinyStories-110M shape: f32,
// tied embeddings, vocab 32000), generated once into the temp dir.
//
// Each request's prompt starts with a distinct number so that prompts share
// no prefix-cache block (VSERVE_BENCH_SHARED_PROMPT=1 sends one identical
// prompt instead).
//
// VSERVE_BENCH_ARGS adds vserve flags.
//
// Metrics: tokens/s (output tokens over wall time), ttft_p50_ms and
// itl_p50_ms (per-client inter-token latency).
func BenchmarkServe(b *testing.B) {
	specName := os.Getenv("VSERVE_BENCH_SPEC")
	if specName == "" {
		specName = "tiny"
	}
	spec, ok := model.SpecByName(specName)
	if !ok {
		b.Fatalf("VSERVE_BENCH_SPEC %q: unknown spec", specName)
	}
	dir := filepath.Join(os.TempDir(), "vserve-bench-"+spec.Name)
	if !complete(dir) {
		if err := model.Generate(dir, spec, 1); err != nil {
			b.Fatal(err)
		}
	}
	args := []string{"--host", "127.0.0.1", "--port", "0", "--model", dir, "--stats-interval", "0", "--log-level", "warn"}
	args = append(args, strings.Fields(os.Getenv("VSERVE_BENCH_ARGS"))...) // e.g. "--max-num-batched-tokens 256"
	cfg, err := ParseFlags(args, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	a, err := Start(context.Background(), cfg, NewLogger(io.Discard, cfg.LogLevel), io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	<-a.Ready()
	if err := a.LoadErr(); err != nil {
		b.Fatal(err)
	}
	url := "http://" + a.Addr().String() + "/v1/completions"
	for _, c := range []int{1, 4, 16} {
		b.Run("c="+strconv.Itoa(c), func(b *testing.B) { benchConcurrency(b, url, c) })
	}
}

type streamStats struct {
	ttft   time.Duration
	itls   []time.Duration // between content events
	events int
	tokens int // usage.completion_tokens
}

func benchConcurrency(b *testing.B, url string, conc int) {
	const outTokens = 128
	shared := os.Getenv("VSERVE_BENCH_SHARED_PROMPT") == "1"
	var seq atomic.Int64
	bodyFor := func() []byte {
		prompt := "Once upon a time, in a small village by the sea, there lived a curious little girl named"
		if !shared {
			prompt = strconv.FormatInt(seq.Add(1)*7919, 10) + ". " + prompt
		}
		body, _ := json.Marshal(map[string]any{"prompt": prompt,
			"max_tokens": outTokens, "ignore_eos": true, "stream": true, "temperature": 0,
			"stream_options": map[string]any{"include_usage": true}})
		return body
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	var all []streamStats
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		var wg sync.WaitGroup
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := streamOnce(client, url, bodyFor())
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				all = append(all, s)
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	el := time.Since(start)
	b.StopTimer()
	var toks int
	var ttfts, itls []time.Duration
	for _, s := range all {
		toks += s.tokens
		ttfts = append(ttfts, s.ttft)
		itls = append(itls, s.itls...)
	}
	b.ReportMetric(float64(toks)/el.Seconds(), "tokens/s")
	b.ReportMetric(p50(ttfts).Seconds()*1e3, "ttft_p50_ms")
	b.ReportMetric(p50(itls).Seconds()*1e3, "itl_p50_ms")
	b.ReportMetric(0, "ns/op")
}

// streamOnce runs one streaming completion and times its events.
func streamOnce(client *http.Client, url string, body []byte) (streamStats, error) {
	var s streamStats
	t0 := time.Now()
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	last := t0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("data: {")) {
			continue
		}
		var chunk struct {
			Choices []json.RawMessage `json:"choices"`
			Usage   *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(line[len("data: "):], &chunk); err != nil {
			return s, err
		}
		if chunk.Usage != nil {
			s.tokens = chunk.Usage.CompletionTokens
		}
		if len(chunk.Choices) == 0 {
			continue
		}
		now := time.Now()
		if s.events == 0 {
			s.ttft = now.Sub(t0)
		} else {
			s.itls = append(s.itls, now.Sub(last))
		}
		last = now
		s.events++
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if s.tokens == 0 {
		return s, fmt.Errorf("no usage in the stream (status %d)", resp.StatusCode)
	}
	return s, nil
}

func p50(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}
