package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		events []string
		last   error
	}{
		{"simple", "data: a\n\ndata: b\n\n", []string{"a", "b"}, io.EOF},
		{"crlf and comments", ": keep-alive\r\ndata: x\r\n\r\n", []string{"x"}, io.EOF},
		{"multi-line data", "data: a\ndata: b\n\n", []string{"a\nb"}, io.EOF},
		{"other fields skipped", "event: e\nid: 1\ndata:{}\n\n", []string{"{}"}, io.EOF},
		{"cut off", "data: a\n\ndata: part", []string{"a", "part"}, io.ErrUnexpectedEOF},
		{"blank lines only", "\n\n\n", nil, io.EOF},
		{"lone CR ends lines", "data: a\rdata: b\r\rdata: c\r\r", []string{"a\nb", "c"}, io.EOF},
		{"lone CR, then a line feed", "data: a\r\ndata: b\r\n\r\n: x\r\r", []string{"a\nb"}, io.EOF},
		{"cut off after a CR", "data: a\r\rdata: x\r", []string{"a", "x"}, io.ErrUnexpectedEOF},
		{"a field named by a lone CR's rest", "data: a\r0\r\r", []string{"a"}, io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewSSEReader(strings.NewReader(tc.in))
			var got []string
			var err error
			for {
				var d []byte
				d, err = r.Next()
				if d != nil {
					got = append(got, string(d))
				}
				if err != nil {
					break
				}
			}
			assert.Equal(t, tc.events, got)
			assert.ErrorIs(t, err, tc.last)
		})
	}
}

func FuzzSSEReader(f *testing.F) {
	f.Add([]byte("data: a\n\ndata: [DONE]\n\n"))
	f.Add([]byte(":x\r\ndata:\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewSSEReader(bytes.NewReader(in))
		for i := 0; i <= len(in)+1; i++ {
			d, err := r.Next()
			if bytes.ContainsAny(d, "\r") {
				t.Fatalf("event data keeps a CR: %q", d)
			}
			if err != nil {
				return
			}
		}
		t.Fatal("reader did not terminate")
	})
}

func TestPercentileMatchesNumpyLinear(t *testing.T) {
	v := []float64{1, 2, 3, 4}
	// numpy.percentile([1,2,3,4], [50, 90, 99]) = 2.5, 3.7, 3.97
	assert.InDelta(t, 2.5, Percentile(v, 50), 1e-12)
	assert.InDelta(t, 3.7, Percentile(v, 90), 1e-12)
	assert.InDelta(t, 3.97, Percentile(v, 99), 1e-12)
	assert.Equal(t, 7.0, Percentile([]float64{7}, 99))
	assert.True(t, math.IsNaN(Percentile(nil, 50)))
}

func TestSummarizeArithmetic(t *testing.T) {
	msd := time.Millisecond
	results := []Result{
		{TTFT: 100 * msd, E2E: 1100 * msd, PromptTokens: 10, OutputTokens: 11, ITL: []time.Duration{100 * msd, 100 * msd}},
		{TTFT: 300 * msd, E2E: 2300 * msd, PromptTokens: 20, OutputTokens: 5, ITL: []time.Duration{500 * msd}},
		{Err: "HTTP 429", ErrKind: "http_429"},
		{Err: "boom", ErrKind: "connection"},
		{Err: "HTTP 429", ErrKind: "http_429"},
	}
	s := Summarize("x", results, 2*time.Second, SLO{TTFT: 200 * msd, TPOT: 150 * msd})
	assert.Equal(t, 2, s.Completed)
	assert.Equal(t, 3, s.Failed)
	assert.Equal(t, map[string]int{"http_429": 2, "connection": 1}, s.ErrorsByKind)
	assert.Equal(t, 30, s.InputTokens)
	assert.Equal(t, 16, s.OutputTokens)
	assert.InDelta(t, 1.0, s.RequestRate, 1e-12)
	assert.InDelta(t, 8.0, s.OutputTokensPS, 1e-12)
	assert.InDelta(t, 23.0, s.TotalTokensPS, 1e-12)
	// TPOT: (1100-100)/10 = 100 ms and (2300-300)/4 = 500 ms.
	assert.InDelta(t, 300.0, s.TPOT.Mean, 1e-9)
	assert.InDelta(t, 300.0, s.TPOT.Median, 1e-9)
	assert.InDelta(t, 200.0, s.TTFT.Mean, 1e-9)
	assert.Equal(t, 3, s.ITL.Count)
	assert.InDelta(t, 100.0, s.ITL.Median, 1e-9)
	assert.InDelta(t, 1700.0, s.E2E.Mean, 1e-9)
	// Only the first request meets both SLOs: 1 good request in 2 s.
	require.NotNil(t, s.Goodput)
	assert.InDelta(t, 0.5, *s.Goodput, 1e-12)
}

func TestTPOTSingleToken(t *testing.T) {
	r := Result{TTFT: time.Second, E2E: 2 * time.Second, OutputTokens: 1}
	assert.Zero(t, r.TPOT())
}

// gapsOf returns the differences between successive arrival times (the
// first from the start of the run).
func gapsOf(times []time.Duration) []time.Duration {
	gaps := make([]time.Duration, len(times))
	prev := time.Duration(0)
	for i, t := range times {
		gaps[i] = t - prev
		prev = t
	}
	return gaps
}

func TestArrivalTimesRate(t *testing.T) {
	for _, b := range []float64{0.5, 1, 4} {
		times, err := ArrivalTimes(20000, 50, b, 7)
		require.NoError(t, err)
		var sum, sumSq float64
		for _, g := range gapsOf(times) {
			require.GreaterOrEqual(t, g, time.Duration(0), "arrival times never go back")
			s := g.Seconds()
			sum += s
			sumSq += s * s
		}
		n := float64(len(times))
		mean := sum / n
		cv2 := (sumSq/n - mean*mean) / (mean * mean)
		assert.InDelta(t, 0.02, mean, 0.02*0.05, "burstiness %v: mean gap", b)
		// Gamma(shape k): squared coefficient of variation is 1/k.
		assert.InDelta(t, 1/b, cv2, 0.15/b, "burstiness %v: variability", b)
	}
	a1, _ := ArrivalTimes(5, 10, 1, 3)
	a2, _ := ArrivalTimes(5, 10, 1, 3)
	assert.Equal(t, a1, a2, "seeded arrivals are reproducible")
}

// As in vllm bench serve, the running sum of the gaps is rescaled so that
// the last request goes out at n/rate whatever the seed: before, the last
// arrival of a seed's run landed a few per cent off it.
func TestArrivalTimesEndAtNOverRate(t *testing.T) {
	for _, tc := range []struct {
		n       int
		rate, b float64
		seed    uint64
	}{
		{100, 10, 1, 1}, {100, 10, 1, 2}, {37, 3, 0.25, 5}, {500, 40, 8, 9}, {1, 2, 1, 3}, {8, 4, math.Inf(1), 1},
	} {
		times, err := ArrivalTimes(tc.n, tc.rate, tc.b, tc.seed)
		require.NoError(t, err)
		want := time.Duration(float64(tc.n) / tc.rate * float64(time.Second))
		assert.InDelta(t, float64(want), float64(times[len(times)-1]), 2, "%+v: last arrival at n/rate", tc)
	}
}

// The edge cases of vllm bench serve's arrival process: an infinite
// burstiness is a constant 1/rate gap, an infinite (or, here, zero) rate
// sends everything at once, a burstiness <= 0 or NaN is refused.
func TestArrivalTimesEdges(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name             string
		rate, burstiness float64
		want             time.Duration // every gap
		fails            bool
	}{
		{"infinite burstiness: constant gap", 4, inf, 250 * time.Millisecond, false},
		{"infinite rate", inf, 1, 0, false},
		{"zero rate", 0, 1, 0, false},
		{"infinite rate and burstiness", inf, inf, 0, false},
		{"zero burstiness", 4, 0, 0, true},
		{"negative burstiness", 4, -1, 0, true},
		{"NaN burstiness", 4, math.NaN(), 0, true},
		{"NaN burstiness, infinite rate", inf, math.NaN(), 0, true},
		{"negative rate", -1, 1, 0, true},
		{"NaN rate", math.NaN(), 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			times, err := ArrivalTimes(6, tc.rate, tc.burstiness, 1)
			if tc.fails {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Len(t, times, 6)
			for _, g := range gapsOf(times) {
				assert.InDelta(t, float64(tc.want), float64(g), 1)
			}
		})
	}
}

// Run and Compare refuse a configuration Arrivals would, before sending.
func TestRunRefusesBadLoad(t *testing.T) {
	var calls atomic.Int64
	send := func(ctx context.Context, p Prompt) Result { calls.Add(1); return Result{} }
	for _, cfg := range []LoadConfig{
		{RequestRate: 10, Burstiness: -1, Warmup: 1},
		{RequestRate: 10, Burstiness: math.NaN()},
		{RequestRate: -5},
		{RequestRate: math.NaN()},
	} {
		_, _, err := Run(context.Background(), send, make([]Prompt, 3), cfg)
		assert.Error(t, err, "%+v", cfg)
		_, _, _, _, err = Compare(context.Background(), send, send, make([]Prompt, 3), cfg, 2)
		assert.Error(t, err, "%+v", cfg)
	}
	assert.Zero(t, calls.Load(), "nothing is sent")
	// The zero value of Burstiness stands for a Poisson process.
	_, _, err := Run(context.Background(), send, make([]Prompt, 2), LoadConfig{RequestRate: 1e6})
	assert.NoError(t, err)
}

func TestRunRespectsConcurrency(t *testing.T) {
	var inFlight, peak, calls atomic.Int64
	send := func(ctx context.Context, p Prompt) Result {
		n := inFlight.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		calls.Add(1)
		time.Sleep(time.Millisecond)
		inFlight.Add(-1)
		return Result{OutputTokens: p.OutputLen}
	}
	prompts := make([]Prompt, 40)
	for i := range prompts {
		prompts[i].OutputLen = i + 1
	}
	var progress []int
	var mu sync.Mutex
	res, _, err := Run(context.Background(), send, prompts, LoadConfig{Concurrency: 3, Warmup: 2,
		Progress: func(done, total int) { mu.Lock(); progress = append(progress, done); mu.Unlock() }})
	require.NoError(t, err)
	// The first two prompts warm up and are not measured (they were
	// measured again before).
	require.Len(t, res, 38)
	for i, r := range res {
		assert.Equal(t, i+3, r.OutputTokens, "result %d belongs to prompt %d", i, i+2)
	}
	assert.LessOrEqual(t, peak.Load(), int64(3))
	assert.Equal(t, int64(40), calls.Load(), "each prompt is sent once")
	assert.Len(t, progress, 38)
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	send := func(ctx context.Context, p Prompt) Result {
		if calls.Add(1) == 5 {
			cancel()
		}
		return Result{}
	}
	res, _, _ := Run(ctx, send, make([]Prompt, 100), LoadConfig{Concurrency: 1})
	assert.Less(t, len(res), 100)
}

func TestCompareInterleavesABBA(t *testing.T) {
	var mu sync.Mutex
	var order []string
	mk := func(name string) Sender {
		return func(ctx context.Context, p Prompt) Result {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return Result{OutputTokens: p.OutputLen}
		}
	}
	prompts := []Prompt{{OutputLen: 1}, {OutputLen: 2}, {OutputLen: 3}, {OutputLen: 4}}
	ra, rb, _, _, _ := Compare(context.Background(), mk("a"), mk("b"), prompts, LoadConfig{Concurrency: 1}, 2)
	assert.Equal(t, []string{"a", "a", "b", "b", "b", "b", "a", "a"}, order)

	// Warm-up prompts go to both targets first and are not measured.
	order = nil
	wa, wb, _, _, _ := Compare(context.Background(), mk("a"), mk("b"), prompts, LoadConfig{Concurrency: 1, Warmup: 1}, 1)
	assert.Equal(t, []string{"a", "b", "a", "a", "a", "b", "b", "b"}, order)
	assert.Len(t, wa, 3)
	assert.Len(t, wb, 3)
	assert.Equal(t, 2, wa[0].OutputTokens, "the first measured prompt follows the warm-up one")
	require.Len(t, ra, 4)
	require.Len(t, rb, 4)
	for i := range ra {
		assert.Equal(t, ra[i].OutputTokens, rb[i].OutputTokens, "both targets see the same prompts")
	}
}

// fakeTok is a tokenizer whose tokens are single letters a..z: Encode
// splits runes, Decode joins them. Ids 0 and 1 are special.
type fakeTok struct{}

func (fakeTok) Encode(s string, _ bool) []int32 {
	ids := make([]int32, 0, len(s))
	for _, r := range s {
		ids = append(ids, int32(r-'a')+2)
	}
	return ids
}
func (fakeTok) Decode(ids []int32, skip bool) string {
	var b strings.Builder
	for _, id := range ids {
		if id < 2 {
			if !skip {
				b.WriteString("<s>")
			}
			continue
		}
		b.WriteRune(rune(id-2) + 'a')
	}
	return b.String()
}
func (fakeTok) VocabSize() int          { return 28 }
func (fakeTok) IsSpecial(id int32) bool { return id < 2 }

func TestRandomPromptsTokenExact(t *testing.T) {
	ps, err := RandomPrompts(fakeTok{}, 50, LenRange{Mean: 20, Ratio: 0.5}, LenRange{Mean: 8}, 1)
	require.NoError(t, err)
	for _, p := range ps {
		assert.Len(t, fakeTok{}.Encode(p.Text, false), p.PromptLen)
		assert.GreaterOrEqual(t, p.PromptLen, 10)
		assert.LessOrEqual(t, p.PromptLen, 30)
		assert.Equal(t, 8, p.OutputLen)
		for _, id := range p.TokenIDs {
			assert.False(t, fakeTok{}.IsSpecial(id))
		}
	}
	again, _ := RandomPrompts(fakeTok{}, 50, LenRange{Mean: 20, Ratio: 0.5}, LenRange{Mean: 8}, 1)
	assert.Equal(t, ps, again)
	_, err = RandomPrompts(nil, 1, LenRange{Mean: 1}, LenRange{Mean: 1}, 1)
	assert.Error(t, err)
}

// LenRange's bounds are vLLM's: floor of the low end, ceil of the high
// end, computed in float64 as Python does (so 100 with ratio 0.1 reaches
// 111, as in vLLM), and a ratio outside [0, 1) is refused.
func TestLenRangeBounds(t *testing.T) {
	for _, tc := range []struct {
		mean   int
		ratio  float64
		lo, hi int
		fails  bool
	}{
		{10, 0, 10, 10, false},
		{10, 0.25, 7, 13, false},
		{100, 0.1, 90, 111, false},
		{128, 0.5, 64, 192, false},
		{1, 0.5, 0, 2, false},
		{10, 1, 0, 0, true},
		{10, 1.5, 0, 0, true},
		{10, -0.1, 0, 0, true},
		{10, math.NaN(), 0, 0, true},
	} {
		lo, hi, err := LenRange{Mean: tc.mean, Ratio: tc.ratio}.Bounds()
		if tc.fails {
			assert.Error(t, err, "mean %d ratio %v", tc.mean, tc.ratio)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, [2]int{tc.lo, tc.hi}, [2]int{lo, hi}, "mean %d ratio %v", tc.mean, tc.ratio)
	}
}

// RandomPrompts draws over the whole of vLLM's range (both ends reached),
// keeps outputs at one token or more, and refuses bad ratios and input
// ranges that reach zero tokens.
func TestRandomPromptsRanges(t *testing.T) {
	ps, err := RandomPrompts(fakeTok{}, 400, LenRange{Mean: 10, Ratio: 0.25}, LenRange{Mean: 1, Ratio: 0.5}, 1)
	require.NoError(t, err)
	in, out := map[int]bool{}, map[int]bool{}
	for _, p := range ps {
		in[p.PromptLen] = true
		out[p.OutputLen] = true
	}
	assert.Equal(t, map[int]bool{7: true, 8: true, 9: true, 10: true, 11: true, 12: true, 13: true}, in)
	assert.Equal(t, map[int]bool{1: true, 2: true}, out, "output lengths [max(0, 1), 2]")
	for _, tc := range []struct {
		name    string
		in, out LenRange
	}{
		{"input ratio 1.5", LenRange{Mean: 10, Ratio: 1.5}, LenRange{Mean: 4}},
		{"output ratio 1", LenRange{Mean: 10}, LenRange{Mean: 4, Ratio: 1}},
		{"input can be 0 tokens", LenRange{Mean: 1, Ratio: 0.5}, LenRange{Mean: 4}},
	} {
		_, err := RandomPrompts(fakeTok{}, 1, tc.in, tc.out, 1)
		assert.Error(t, err, tc.name)
	}
}

func TestParseShareGPT(t *testing.T) {
	data := []byte(`[
	 {"conversations": [{"from":"human","value":"abcdef"},{"from":"gpt","value":"ghijkl"}]},
	 {"conversations": [{"from":"human","value":"ab"},{"from":"gpt","value":"ghijkl"}]},
	 {"conversations": [{"from":"human","value":"abcdefgh"}]},
	 {"conversations": [{"from":"human","value":"abcdefghij"},{"from":"gpt","value":"abcde"}]}
	]`)
	ps, err := ParseShareGPT(data, fakeTok{}, ShareGPTOptions{})
	require.NoError(t, err)
	require.Len(t, ps, 2, "short prompts and single-turn entries are dropped")
	lens := map[int]int{}
	for _, p := range ps {
		lens[p.PromptLen] = p.OutputLen
	}
	assert.Equal(t, map[int]int{6: 6, 10: 5}, lens)

	// A fixed output length replaces the reference answers' lengths, with a
	// tokenizer too, and is not held to the 4-token minimum (vLLM).
	two, err := ParseShareGPT(data, fakeTok{}, ShareGPTOptions{OutputLen: 2})
	require.NoError(t, err)
	require.Len(t, two, 2)
	for _, p := range two {
		assert.Equal(t, 2, p.OutputLen)
	}

	fixed, err := ParseShareGPT(data, nil, ShareGPTOptions{OutputLen: 32, N: 1})
	require.NoError(t, err)
	require.Len(t, fixed, 1)
	assert.Equal(t, 32, fixed[0].OutputLen)

	_, err = ParseShareGPT([]byte(`{`), fakeTok{}, ShareGPTOptions{})
	assert.Error(t, err)
	_, err = ParseShareGPT(data, nil, ShareGPTOptions{})
	assert.Error(t, err, "no tokenizer and no fixed output length")
}

func TestSharedPrefixPrompts(t *testing.T) {
	ps, err := SharedPrefixPrompts(fakeTok{}, 3, 4, 40, 5, 16, 2)
	require.NoError(t, err)
	require.Len(t, ps, 12)
	for i, p := range ps {
		assert.Equal(t, ps[i%3].System, p.System, "group %d shares its prefix", i%3)
		assert.True(t, strings.HasPrefix(p.Text, p.System))
		assert.Len(t, fakeTok{}.Encode(p.System, false), 40)
		assert.Equal(t, 45, p.PromptLen)
	}
	assert.NotEqual(t, ps[0].System, ps[1].System)
}

func TestParseCounters(t *testing.T) {
	text := `# HELP vllm:prefix_cache_queries_total Prefix cache queries.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 100
# HELP vllm:prefix_cache_hits_total Prefix cache hits.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 25
# HELP vllm:num_preemptions_total Preemptions.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 3
`
	c, err := ParseCounters(strings.NewReader(text))
	require.NoError(t, err)
	assert.Equal(t, ServerCounters{100, 25, 3}, c)
	assert.InDelta(t, 0.25, c.HitRate(), 1e-12)
	assert.Equal(t, ServerCounters{50, 20, 1}, c.Sub(ServerCounters{50, 5, 2}))
	assert.Zero(t, ServerCounters{}.HitRate())
	_, err = ParseCounters(strings.NewReader("not { metrics"))
	assert.Error(t, err)
}

// sseServer answers completions with a scripted SSE stream.
func sseServer(t *testing.T, status int, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			io.WriteString(w, `{"object":"list","data":[{"id":"m1"}]}`)
			return
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestClientDo(t *testing.T) {
	stream := "data: {\"choices\":[{\"text\":\"a\"}]}\n\n" +
		"data: {\"choices\":[{\"text\":\"b\"}]}\n\n" +
		"data: {\"choices\":[{\"text\":\"\"}]}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n" +
		"data: [DONE]\n\n"
	tests := []struct {
		name, body string
		status     int
		kind       string
		out        int
	}{
		{"ok", stream, 200, "", 2},
		{"429", `{"error":{"message":"busy"}}`, 429, "http_429", 0},
		{"400", `{"error":{"message":"bad"}}`, 400, "http_4xx", 0},
		{"no done", "data: {\"choices\":[{\"text\":\"a\"}]}\n\n", 200, "protocol", 0},
		{"error chunk", "data: {\"error\":{\"message\":\"x\"}}\n\n", 200, "server_error", 0},
		{"bad json", "data: {nope\n\n", 200, "protocol", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := sseServer(t, tc.status, tc.body)
			c := NewClient(Target{Name: "t", BaseURL: srv.URL, API: Completions}, 1)
			require.NoError(t, c.ResolveModel(context.Background()))
			assert.Equal(t, "m1", c.Target.Model)
			r := c.Do(context.Background(), Prompt{Text: "hi", OutputLen: 2, PromptLen: 1})
			assert.Equal(t, tc.kind, r.ErrKind, r.Err)
			if tc.kind == "" {
				assert.Equal(t, 2, r.OutputTokens)
				assert.Equal(t, 7, r.PromptTokens)
				assert.Len(t, r.ITL, 2, "the chunk with empty text counts, as in vLLM")
				assert.Positive(t, r.TTFT)
				assert.GreaterOrEqual(t, r.E2E, r.TTFT)
			}
			c.HTTP.CloseIdleConnections()
		})
	}
}

// TestClientReusesConnections: a client that closed streams before their
// end made the server accept a connection per request.
func TestClientReusesConnections(t *testing.T) {
	stream := "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: [DONE]\n\n"
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, stream)
		w.(http.Flusher).Flush() // chunked, as a streaming server sends it
		// The end of the chunked body follows a moment later, as from a
		// server that finishes its request after the last event (a client
		// that stops at [DONE] has closed the connection by then).
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Millisecond):
		}
	}))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := NewClient(Target{Name: "t", BaseURL: srv.URL, Model: "m", API: Completions}, 1)
	t.Cleanup(c.HTTP.CloseIdleConnections)
	for range 10 {
		r := c.Do(context.Background(), Prompt{Text: "hi", OutputLen: 1})
		require.True(t, r.OK(), r.Err)
	}
	assert.Equal(t, int32(1), conns.Load(), "ten requests in sequence over one connection")
}

func TestClientConnectionError(t *testing.T) {
	srv := sseServer(t, 200, "")
	url := srv.URL
	srv.Close()
	c := NewClient(Target{Name: "t", BaseURL: url, Model: "m", API: Chat}, 1)
	r := c.Do(context.Background(), Prompt{Text: "hi", OutputLen: 1})
	assert.Equal(t, "connection", r.ErrKind)
	assert.False(t, r.OK())
}

// The request bodies carry what vllm bench serve's carry: no temperature
// and no ignore_eos unless asked for, max_completion_tokens for chat.
func TestClientBodies(t *testing.T) {
	zero, half := 0.0, 0.5
	for _, tc := range []struct {
		name        string
		api         API
		ignoreEOS   bool
		temperature *float64
		prompt      Prompt
		path, want  string
	}{
		{"chat, defaults", Chat, false, nil, Prompt{Text: "SYSquestion", System: "SYS", OutputLen: 3}, "/v1/chat/completions",
			`{"model":"m","max_completion_tokens":3,"stream":true,"stream_options":{"include_usage":true},
			"messages":[{"role":"system","content":"SYS"},{"role":"user","content":"question"}]}`},
		{"chat, ignore_eos, temperature 0", Chat, true, &zero, Prompt{Text: "q", OutputLen: 3}, "/v1/chat/completions",
			`{"model":"m","max_completion_tokens":3,"stream":true,"stream_options":{"include_usage":true},"ignore_eos":true,"temperature":0,
			"messages":[{"role":"user","content":"q"}]}`},
		{"completions, token ids, defaults", Completions, false, nil, Prompt{Text: "x", TokenIDs: []int32{5, 6}, OutputLen: 1}, "/v1/completions",
			`{"model":"m","max_tokens":1,"stream":true,"stream_options":{"include_usage":true},"prompt":[5,6]}`},
		{"completions, text, temperature 0.5", Completions, true, &half, Prompt{Text: "x", OutputLen: 2}, "/v1/completions",
			`{"model":"m","max_tokens":2,"stream":true,"stream_options":{"include_usage":true},"ignore_eos":true,"temperature":0.5,"prompt":"x"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{Target: Target{Model: "m", API: tc.api}, IgnoreEOS: tc.ignoreEOS, Temperature: tc.temperature}
			b, path := c.body(tc.prompt)
			assert.Equal(t, tc.path, path)
			assert.JSONEq(t, tc.want, string(b))
		})
	}
	assert.False(t, NewClient(Target{}, 1).IgnoreEOS, "ignore_eos is off by default, as in vLLM")
}

func TestWriteTableAndPlots(t *testing.T) {
	msd := time.Millisecond
	res := []Result{{TTFT: 10 * msd, E2E: 100 * msd, OutputTokens: 10, PromptTokens: 5}, {TTFT: 20 * msd, E2E: 200 * msd, OutputTokens: 10, PromptTokens: 5}}
	a := Summarize("a", res, time.Second, SLO{})
	b := Summarize("b", res[:1], time.Second, SLO{})
	var buf bytes.Buffer
	require.NoError(t, WriteTable(&buf, a, b))
	assert.Contains(t, buf.String(), "b/a")
	assert.Contains(t, buf.String(), "0.50x", "b has half a's throughput")
	for _, row := range []string{"total input tokens", "total output tokens", "total token throughput (tok/s)", "TTFT std (ms)", "E2E p99 (ms)"} {
		assert.Contains(t, buf.String(), row, "vllm bench serve's rows")
	}

	dir := t.TempDir()
	require.NoError(t, PlotLatencyCDF(filepath.Join(dir, "cdf.png"), Series{"a", res}, Series{"b", res[:1]}))
	require.NoError(t, PlotThroughput(filepath.Join(dir, "tp.png"), map[string][]SweepPoint{"a": {{1, a}, {4, b}}}))
	for _, f := range []string{"cdf.png", "tp.png"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.True(t, bytes.HasPrefix(data, []byte("\x89PNG")), f)
	}
	require.NoError(t, WriteJSON(filepath.Join(dir, "s.json"), []Summary{a}))
	assert.Error(t, WriteJSON(filepath.Join(dir, "missing", "s.json"), a))
}

// A server that stalls mid-stream hung the run: Client.Timeout bounds a
// request from its start to the end of its stream.
func TestClientTimeout(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall string // what the server sends before it stalls
	}{
		{"before the headers", ""},
		{"mid-stream", "data: {\"choices\":[{\"text\":\"a\"}]}\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// Reading the body to its end lets the server notice the
				// client closing the connection (and end the handler).
				_, _ = io.Copy(io.Discard, r.Body)
				if tc.stall != "" {
					io.WriteString(w, tc.stall)
					w.(http.Flusher).Flush()
				}
				<-r.Context().Done()
			}))
			t.Cleanup(srv.Close)
			c := NewClient(Target{Name: "t", BaseURL: srv.URL, Model: "m", API: Completions}, 1)
			t.Cleanup(c.HTTP.CloseIdleConnections)
			c.Timeout = 50 * time.Millisecond
			// Without the timeout the request would wait for this
			// cancellation and fail as "canceled".
			ctx, cancel := context.WithCancel(context.Background())
			defer time.AfterFunc(10*time.Second, cancel).Stop()
			r := c.Do(ctx, Prompt{Text: "hi", OutputLen: 4})
			assert.Equal(t, "timeout", r.ErrKind, r.Err)
		})
	}
	assert.Equal(t, 6*time.Hour, NewClient(Target{}, 1).Timeout, "vllm bench serve's default")
}

// tickClock returns a clock that moves one second at each reading,
// starting at one second past the epoch: a stream read with it has
// timings that count the clock readings, with no real time involved.
func tickClock() func() time.Time {
	n := 0
	return func() time.Time {
		n++
		return time.Unix(int64(n), 0)
	}
}

// The stream is timed as vllm bench serve's request functions time it:
// TTFT at the first chunk with a non-empty choices list (even with empty
// text, such as chat's role chunk), an ITL per later chunk with choices,
// E2E at the last chunk with choices (the usage chunk and [DONE] carry no
// token), and a stream with no chunk with choices fails. With tickClock,
// the start reads 1 s and the n-th event n+1 s.
func TestReadStreamTiming(t *testing.T) {
	sec := time.Second
	const done = "data: [DONE]\n\n"
	usage := func(out int) string {
		return fmt.Sprintf("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":%d}}\n\n", out)
	}
	text := func(s string) string { return fmt.Sprintf("data: {\"choices\":[{\"text\":%q}]}\n\n", s) }
	delta := func(s string) string { return fmt.Sprintf("data: {\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", s) }
	const role = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"
	for _, tc := range []struct {
		name   string
		stream string
		kind   string
		ttft   time.Duration
		itl    []time.Duration
		e2e    time.Duration
		out    int
	}{
		{"completions", text("a") + text("b") + text("c") + usage(3) + done, "", sec, []time.Duration{sec, sec}, 3 * sec, 3},
		{"an empty text is a chunk", text("a") + text("") + text("b") + usage(2) + done, "", sec, []time.Duration{sec, sec}, 3 * sec, 2},
		{"the first chunk's text is empty", text("") + text("a") + usage(1) + done, "", sec, []time.Duration{sec}, 2 * sec, 1},
		{"chat: the role chunk is the first", role + delta("x") + delta("y") + usage(2) + done, "", sec, []time.Duration{sec, sec}, 3 * sec, 2},
		{"E2E ends at the last chunk with choices", text("a") + usage(1) + ": keep-alive\n\n" + done, "", sec, nil, sec, 1},
		{"usage only: no output", usage(0) + done, "protocol", 0, nil, 0, 0},
		{"nothing: no output", done, "protocol", 0, nil, 0, 0},
		{"no [DONE]", text("a"), "protocol", 0, nil, 0, 0},
		{"error chunk", text("a") + "data: {\"error\":{\"message\":\"x\"}}\n\n", "server_error", 0, nil, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{now: tickClock()}
			r := c.readStream(Result{Start: c.clock()}, strings.NewReader(tc.stream))
			require.Equal(t, tc.kind, r.ErrKind, r.Err)
			if tc.kind != "" {
				return
			}
			assert.Equal(t, tc.ttft, r.TTFT, "TTFT")
			assert.Equal(t, tc.itl, r.ITL, "ITL")
			assert.Equal(t, tc.e2e, r.E2E, "E2E")
			assert.Equal(t, tc.out, r.OutputTokens)
			assert.Equal(t, 3, r.PromptTokens)
		})
	}
}

// Without a usage chunk, the output tokens are the generated text's tokens
// through the client's tokenizer, as vLLM counts them, or, with no
// tokenizer, the chunks with choices; the server's usage wins when present.
func TestReadStreamOutputTokens(t *testing.T) {
	const done = "data: [DONE]\n\n"
	text := func(s string) string { return fmt.Sprintf("data: {\"choices\":[{\"text\":%q}]}\n\n", s) }
	delta := func(s string) string { return fmt.Sprintf("data: {\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", s) }
	const role = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"
	usage := "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":7}}\n\n"
	for _, tc := range []struct {
		name   string
		stream string
		tok    Tokenizer
		want   int
	}{
		{"completions, tokenizer", text("ab") + text("cde") + text("") + done, fakeTok{}, 5},
		{"completions, no tokenizer: chunks", text("ab") + text("cde") + text("") + done, nil, 3},
		{"chat, tokenizer", role + delta("abcd") + delta("e") + done, fakeTok{}, 5},
		{"chat, no tokenizer: chunks", role + delta("abcd") + delta("e") + done, nil, 3},
		{"usage wins", text("ab") + usage + done, fakeTok{}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{Tokenizer: tc.tok}
			r := c.readStream(Result{Start: time.Now()}, strings.NewReader(tc.stream))
			require.True(t, r.OK(), r.Err)
			assert.Equal(t, tc.want, r.OutputTokens)
		})
	}
}

// WarmedUp is called between the warm-up and the measured requests: once
// in Run, and once in Compare, after both targets' warm-ups.
func TestWarmedUp(t *testing.T) {
	var mu sync.Mutex
	var events []string
	log := func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
	mk := func(name string) Sender {
		return func(ctx context.Context, p Prompt) Result { log(fmt.Sprint(name, p.OutputLen)); return Result{} }
	}
	prompts := []Prompt{{OutputLen: 1}, {OutputLen: 2}, {OutputLen: 3}, {OutputLen: 4}}
	cfg := LoadConfig{Concurrency: 1, Warmup: 2, WarmedUp: func() { log("warmed") }}
	_, _, err := Run(context.Background(), mk("a"), prompts, cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"a1", "a2", "warmed", "a3", "a4"}, events)
	events = nil
	_, _, _, _, err = Compare(context.Background(), mk("a"), mk("b"), prompts, cfg, 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"a1", "a2", "b1", "b2", "warmed", "a3", "b3", "b4", "a4"}, events)
}

// A goodput of 0 is shown and saved whenever an SLO is set (it was hidden:
// the table row only when > 0, the JSON field omitted when 0); without an
// SLO there is no row and the JSON has null, as vLLM's request_goodput.
func TestGoodputShownWhenSLOSet(t *testing.T) {
	res := []Result{{TTFT: 300 * time.Millisecond, E2E: time.Second, OutputTokens: 2, PromptTokens: 1}}
	for _, tc := range []struct {
		name string
		slo  SLO
		row  bool
		json string
	}{
		{"no SLO", SLO{}, false, `null`},
		{"SLO missed by all: 0", SLO{TTFT: 100 * time.Millisecond}, true, `0`},
		{"SLO met", SLO{TTFT: time.Second}, true, `1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Summarize("x", res, time.Second, tc.slo)
			var buf bytes.Buffer
			require.NoError(t, WriteTable(&buf, s))
			assert.Equal(t, tc.row, strings.Contains(buf.String(), "goodput"), buf.String())
			b, err := json.Marshal(s)
			require.NoError(t, err)
			var m map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(b, &m))
			require.Contains(t, m, "request_goodput")
			assert.JSONEq(t, tc.json, string(m["request_goodput"]))
		})
	}
}

// A run's JSON object is vllm bench serve's flat one: its keys and values
// (std the population std, as numpy's), the per-request arrays in seconds,
// with vserve's own figures under names vLLM does not use; and it reads
// back.
func TestSummaryJSON(t *testing.T) {
	msd := time.Millisecond
	t0 := time.Unix(1000, 0)
	results := []Result{
		{Start: t0, TTFT: 100 * msd, ITL: []time.Duration{100 * msd, 100 * msd}, E2E: 300 * msd, PromptTokens: 10, OutputTokens: 3},
		{Start: t0.Add(time.Second), TTFT: 300 * msd, ITL: []time.Duration{200 * msd}, E2E: 500 * msd, PromptTokens: 20, OutputTokens: 2},
		{Start: t0.Add(2 * time.Second), E2E: 50 * msd, PromptTokens: 5, Err: "HTTP 429: busy", ErrKind: "http_429"},
	}
	s := Summarize("vserve", results, 2*time.Second, SLO{})
	s.OfferedRate = RateValue(math.Inf(1))
	b, err := json.Marshal(s)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	want := map[string]any{
		"label": "vserve", "request_rate": "inf", "max_concurrency": nil,
		"duration": 2.0, "completed": 2.0, "failed": 1.0, "total_input_tokens": 30.0, "total_output_tokens": 5.0,
		"request_throughput": 1.0, "request_goodput": nil, "output_throughput": 2.5, "total_token_throughput": 17.5,
		"mean_ttft_ms": 200.0, "median_ttft_ms": 200.0, "std_ttft_ms": 100.0, "p90_ttft_ms": 280.0, "p99_ttft_ms": 298.0,
		// TPOT: (300-100)/2 = 100 and (500-300)/1 = 200.
		"mean_tpot_ms": 150.0, "median_tpot_ms": 150.0, "std_tpot_ms": 50.0, "p90_tpot_ms": 190.0, "p99_tpot_ms": 199.0,
		"mean_itl_ms": 400.0 / 3, "median_itl_ms": 100.0, "std_itl_ms": 47.14045207910317, "p90_itl_ms": 180.0, "p99_itl_ms": 198.0,
		"mean_e2el_ms": 400.0, "median_e2el_ms": 400.0, "std_e2el_ms": 100.0, "p90_e2el_ms": 480.0, "p99_e2el_ms": 498.0,
		"input_lens":  []any{10.0, 20.0, 5.0},
		"output_lens": []any{3.0, 2.0, 0.0},
		"ttfts":       []any{0.1, 0.3, 0.0},
		"itls":        []any{[]any{0.1, 0.1}, []any{0.2}, []any{}},
		"latencies":   []any{0.3, 0.5, 0.0},
		"start_times": []any{0.0, 1.0, 2.0},
		"errors":      []any{"", "", "HTTP 429: busy"},
		// vserve's additions.
		"errors_by_kind": map[string]any{"http_429": 1.0}, "input_throughput": 15.0, "server_metrics": false,
		"server_prefix_cache_hit_rate": 0.0, "server_preemptions": 0.0, // saved when 0 too
	}
	for k, v := range want {
		require.Contains(t, m, k)
		if f, ok := v.(float64); ok {
			assert.InDelta(t, f, m[k], 1e-9, k)
		} else {
			assert.Equal(t, v, m[k], k)
		}
	}
	for k, v := range m {
		_, nested := v.(map[string]any)
		assert.False(t, nested && k != "errors_by_kind", "%s is not flat", k)
	}

	var back Summary
	require.NoError(t, json.Unmarshal(b, &back))
	s.TTFT.Count, s.TPOT.Count, s.ITL.Count, s.E2E.Count = 0, 0, 0, 0 // not saved
	assert.Equal(t, s, back)
}
