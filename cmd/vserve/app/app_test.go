package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/vserve/vserve/internal/sharedtest"
	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/model"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseFlagsDefaults(t *testing.T) {
	c, err := ParseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "", c.Model)
	assert.Equal(t, 8000, c.Port)
	assert.Equal(t, 16, c.BlockSize)
	assert.True(t, c.EnablePrefixCaching)
	assert.Equal(t, "fcfs", c.SchedulingPolicy)
	assert.Equal(t, "auto", c.Device)
	assert.Equal(t, []string{"*"}, c.AllowedOrigins)
	assert.Equal(t, 0.01, c.Tracing.StepSampleRate)
}

// TestAPIKeyFromTheEnvironment: as in vLLM, VLLM_API_KEY is the key when
// --api-key is not given, so a migrated deployment keeps its
// authentication; the flag wins.
func TestAPIKeyFromTheEnvironment(t *testing.T) {
	t.Setenv("VLLM_API_KEY", "from-env")
	c, err := ParseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "from-env", c.APIKey)
	c, err = ParseFlags([]string{"--api-key", "flag"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "flag", c.APIKey)
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c Config)
		err   string
	}{
		{name: "vllm names", args: []string{"--model", "m", "--served-model-name", "a,b", "--max-model-len", "128",
			"--no-enable-prefix-caching", "--scheduling-policy", "priority", "--kv-cache-memory", "64MiB", "--request-timeout", "1.5",
			"--api-key", "k", "--device", "cpu", "--enable-journey-tracing", "--otlp-traces-endpoint", "localhost:4317",
			"--allowed-methods", "GET,POST", "--allowed-headers", "Authorization", "--long-prefill-token-threshold", "256"},
			check: func(t *testing.T, c Config) {
				assert.Equal(t, 256, c.LongPrefillTokenThreshold)
				assert.Equal(t, []string{"GET", "POST"}, c.AllowedMethods)
				assert.Equal(t, []string{"Authorization"}, c.AllowedHeaders)
				assert.Equal(t, "m", c.Model)
				assert.Equal(t, []string{"a", "b"}, c.ServedModelNames)
				assert.Equal(t, 128, c.MaxModelLen)
				assert.False(t, c.EnablePrefixCaching)
				assert.Equal(t, "priority", c.SchedulingPolicy)
				assert.Equal(t, int64(64<<20), c.KVCacheMemory)
				assert.Equal(t, 1500e6, float64(c.RequestTimeout))
				assert.True(t, c.Tracing.EnableJourneyTracing)
			}},
		{name: "positional model", args: []string{"dir"}, check: func(t *testing.T, c Config) { assert.Equal(t, "dir", c.Model) }},
		{name: "policy", args: []string{"--scheduling-policy", "lifo"}, err: "--scheduling-policy must be fcfs or priority"},
		{name: "device", args: []string{"--device", "tpu"}, err: "--device must be cpu, cuda or auto"},
		{name: "block size", args: []string{"--block-size", "12"}, err: "--block-size must be a power of two"},
		{name: "batched tokens", args: []string{"--max-num-seqs", "64", "--max-num-batched-tokens", "32"}, err: "must be at least --max-num-seqs"},
		{name: "kv memory", args: []string{"--kv-cache-memory", "lots"}, err: "--kv-cache-memory"},
		{name: "long prefill threshold", args: []string{"--long-prefill-token-threshold", "-1"}, err: "--long-prefill-token-threshold must not be negative"},
		{name: "gpu util", args: []string{"--gpu-memory-utilization", "1.5"}, err: "--gpu-memory-utilization must be in (0, 1]"},
		{name: "journey rate", args: []string{"--journey-tracing-sample-rate", "2"}, err: "--journey-tracing-sample-rate must be in [0,1]"},
		{name: "journey needs endpoint", args: []string{"--enable-journey-tracing"}, err: "need --otlp-traces-endpoint"},
		{name: "log level", args: []string{"--log-level", "loud"}, err: "--log-level"},
		{name: "timeout", args: []string{"--request-timeout", "-1"}, err: "--request-timeout"},
		{name: "several errors at once", args: []string{"--port", "70000", "--max-num-seqs", "0"}, err: "--port must be in [0, 65535]"},
		{name: "unknown flag", args: []string{"--bogus"}, err: "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseFlags(tc.args, io.Discard)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1000": 1000, "2GiB": 2 << 30, "512MiB": 512 << 20, "1.5G": 1.5e9, "10 KB": 10e3} {
		got, err := ParseBytes(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "-1", "0", "GiB", "1.2.3M", "0.5", "0.4B", "1e-12GiB", "NaN", "InfGiB", "9e18"} {
		_, err := ParseBytes(in)
		assert.Error(t, err, in)
	}
	_, err := ParseBytes("lotsGiB")
	assert.ErrorContains(t, err, `"lotsGiB"`, "the error quotes the flag's value as given")
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"1000", "2GiB", "1.5G", "10 KB", "0.5", "-1", "1e300T", "NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n, err := ParseBytes(in)
		if err == nil && (n < 1 || n > math.MaxInt64/2) {
			t.Fatalf("ParseBytes(%q) = %d, want a positive count", in, n)
		}
	})
}

// startApp starts vserve on a free loopback port and waits until loading
// ended.
func startApp(t *testing.T, args ...string) (*App, string) {
	t.Helper()
	cfg, err := ParseFlags(append([]string{"--host", "127.0.0.1", "--port", "0", "--cache-dir", t.TempDir(), "--stats-interval", "0"}, args...), io.Discard)
	require.NoError(t, err)
	a, err := Start(context.Background(), cfg, NewLogger(io.Discard, cfg.LogLevel), io.Discard)
	require.NoError(t, err)
	<-a.Ready()
	return a, "http://" + a.Addr().String()
}

func postJSON(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var m map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	return resp.StatusCode, m
}

func TestBuiltinModelServes(t *testing.T) {
	a, base := startApp(t)
	require.NoError(t, a.LoadErr())
	resp, err := http.Get(base + "/health")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	resp, err = http.Get(base + "/v1/models")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), BuiltinName)
	assert.Contains(t, string(body), "RANDOM weights")
	status, m := postJSON(t, base+"/v1/completions", `{"prompt":"hello","max_tokens":8,"ignore_eos":true,"temperature":0}`)
	require.Equal(t, 200, status, "%v", m)
	u := m["usage"].(map[string]any)
	assert.Equal(t, 8.0, u["completion_tokens"])
	status, m = postJSON(t, base+"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"ignore_eos":true}`)
	require.Equal(t, 200, status, "%v", m)
	require.NoError(t, a.Shutdown(context.Background()))
}

func TestStories260KGreedy(t *testing.T) {
	dir := sharedtest.Path(t, "models", "stories260K", "hf")
	a, base := startApp(t, "--model", dir, "--served-model-name", "stories")
	require.NoError(t, a.LoadErr())
	defer func() { require.NoError(t, a.Shutdown(context.Background())) }()
	status, m := postJSON(t, base+"/v1/completions", `{"model":"stories","prompt":"Once upon a time","max_tokens":24,"temperature":0}`)
	require.Equal(t, 200, status, "%v", m)
	text := m["choices"].([]any)[0].(map[string]any)["text"].(string)
	assert.Contains(t, text, "Lily", "the trained model tells its usual story")
	status, m = postJSON(t, base+"/v1/chat/completions", `{"model":"stories","messages":[{"role":"user","content":"Tell a story"}],"max_tokens":16,"stop":["."]}`)
	require.Equal(t, 200, status, "%v", m)
	assert.NotContains(t, m["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"], ".")
}

// TestStopStringsCountedAsAnswered: with stop strings on a real model, the
// metrics count the tokens and finish reasons the responses report (the
// engine ends a request at its stop string, not a step or more later).
func TestStopStringsCountedAsAnswered(t *testing.T) {
	dir := sharedtest.Path(t, "models", "stories260K", "hf")
	a, base := startApp(t, "--model", dir, "--served-model-name", "stories")
	require.NoError(t, a.LoadErr())
	defer func() { require.NoError(t, a.Shutdown(context.Background())) }()
	tokens, stops := 0, 0
	for _, stop := range []string{".", "e", "the", "zzz"} {
		status, m := postJSON(t, base+"/v1/completions",
			`{"model":"stories","prompt":"Once upon a time","max_tokens":60,"n":2,"seed":7,"stop":"`+stop+`"}`)
		require.Equal(t, 200, status, "%v", m)
		tokens += int(m["usage"].(map[string]any)["completion_tokens"].(float64))
		for _, c := range m["choices"].([]any) {
			if c.(map[string]any)["finish_reason"] == "stop" {
				stops++
			}
		}
	}
	require.Positive(t, stops)
	metric := func(prefix string) string { // the value of the first sample whose line starts with prefix
		resp, err := http.Get(base + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, prefix) {
				return line[strings.LastIndexByte(line, ' ')+1:]
			}
		}
		return ""
	}
	// The engine reports a request's end just after its stream's.
	require.Eventually(t, func() bool { return a.Engine().Snapshot().NumActive == 0 }, 60e9, 1e6)
	require.Eventually(t, func() bool {
		return metric(`vllm:request_success_total{engine="0",finished_reason="length",model_name="stories"}`) == fmt.Sprint(8-stops)
	}, 60e9, 1e6)
	// Tokens are counted by the step hook, which runs just after the step's
	// responses went out; every step ended before the last request did.
	require.Eventually(t, func() bool { return metric("vllm:generation_tokens_total{") == fmt.Sprint(tokens) }, 60e9, 1e6,
		"generation tokens counted as answered: %d", tokens)
	assert.Equal(t, fmt.Sprint(stops), metric(`vllm:request_success_total{engine="0",finished_reason="stop",model_name="stories"}`))
}

// TestTextOffsetCountsCharacters: completions' text_offset counts
// characters, as Python's len does in vLLM, also for tokens whose text is
// several bytes ("é", and U+FFFD for each byte of "☕").
func TestTextOffsetCountsCharacters(t *testing.T) {
	dir := sharedtest.Path(t, "models", "stories260K", "hf")
	a, base := startApp(t, "--model", dir, "--served-model-name", "stories")
	require.NoError(t, a.LoadErr())
	defer func() { require.NoError(t, a.Shutdown(context.Background())) }()
	for _, stream := range []bool{false, true} {
		body := fmt.Sprintf(`{"model":"stories","prompt":"Café ☕ x","max_tokens":3,"temperature":0,"echo":true,"logprobs":0,"stream":%v}`, stream)
		var tokens []string
		var offsets []int
		if !stream {
			status, m := postJSON(t, base+"/v1/completions", body)
			require.Equal(t, 200, status, "%v", m)
			lp := m["choices"].([]any)[0].(map[string]any)["logprobs"].(map[string]any)
			for i, tok := range lp["tokens"].([]any) {
				tokens = append(tokens, tok.(string))
				offsets = append(offsets, int(lp["text_offset"].([]any)[i].(float64)))
			}
		} else {
			tokens, offsets = streamedOffsets(t, base+"/v1/completions", body)
		}
		multiByte := 0
		for i := range len(tokens) - 1 {
			assert.Equal(t, utf8.RuneCountInString(tokens[i]), offsets[i+1]-offsets[i], "stream %v, token %d %q", stream, i, tokens[i])
			if len(tokens[i]) != utf8.RuneCountInString(tokens[i]) {
				multiByte++
			}
		}
		assert.Positive(t, multiByte, "the prompt has tokens of several bytes")
	}
}

// streamedOffsets reads a streamed completion's logprobs tokens and text
// offsets.
func streamedOffsets(t *testing.T, url, body string) (tokens []string, offsets []int) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok || payload == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Logprobs *struct {
					Tokens     []string `json:"tokens"`
					TextOffset []int    `json:"text_offset"`
				} `json:"logprobs"`
			} `json:"choices"`
		}
		require.NoError(t, json.Unmarshal([]byte(payload), &chunk), payload)
		for _, c := range chunk.Choices {
			if c.Logprobs != nil {
				tokens = append(tokens, c.Logprobs.Tokens...)
				offsets = append(offsets, c.Logprobs.TextOffset...)
			}
		}
	}
	return tokens, offsets
}

// TestGenerationConfigDefaults: with --generation-config auto (the
// default) a model's generation_config.json sets the sampling defaults of
// requests that leave them unset, as in vLLM: top_k 1 makes them greedy.
func TestGenerationConfigDefaults(t *testing.T) {
	src := sharedtest.Path(t, "models", "stories260K", "hf")
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS(src)))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "generation_config.json"),
		[]byte(`{"bos_token_id": 1, "eos_token_id": 2, "top_k": 1, "max_new_tokens": 12}`), 0o644))
	a, base := startApp(t, "--model", dir, "--served-model-name", "stories")
	require.NoError(t, a.LoadErr())
	defer func() { require.NoError(t, a.Shutdown(context.Background())) }()
	var texts []string
	for range 3 {
		status, m := postJSON(t, base+"/v1/completions", `{"model":"stories","prompt":"Once upon a time","ignore_eos":true}`)
		require.Equal(t, 200, status, "%v", m)
		assert.Equal(t, 12.0, m["usage"].(map[string]any)["completion_tokens"], "max_new_tokens caps the default max_tokens")
		texts = append(texts, m["choices"].([]any)[0].(map[string]any)["text"].(string))
	}
	assert.Equal(t, texts[0], texts[1], "top_k 1 from generation_config.json: greedy")
	assert.Equal(t, texts[0], texts[2])
	_, err := ParseFlags([]string{"--generation-config", "folder"}, io.Discard)
	require.ErrorContains(t, err, "--generation-config must be auto or vllm")
}

func TestKVCacheTooSmall(t *testing.T) {
	a, _ := startApp(t, "--kv-cache-memory", "1000")
	err := a.LoadErr()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "raise --kv-cache-memory or lower --max-model-len")
	require.NoError(t, a.Shutdown(context.Background()))
}

func TestMaxModelLenOverModel(t *testing.T) {
	a, _ := startApp(t, "--max-model-len", "100000")
	err := a.LoadErr()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exceeds the model's max_position_embeddings")
	require.NoError(t, a.Shutdown(context.Background()))
}

// TestConcurrentRequests runs chat and completions in parallel through the
// real stack (run with -race to check the tokenizer, template and engine
// sharing).
func TestConcurrentRequests(t *testing.T) {
	a, base := startApp(t)
	require.NoError(t, a.LoadErr())
	defer func() { require.NoError(t, a.Shutdown(context.Background())) }()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, body := "/v1/completions", `{"prompt":"hello there","max_tokens":6,"ignore_eos":true,"stop":["zz"],"logprobs":1}`
			if i%2 == 1 {
				path, body = "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":6,"ignore_eos":true,"stream":false}`
			}
			status, m := postJSON(t, base+path, body)
			assert.Equal(t, 200, status, "%v", m)
		}()
	}
	wg.Wait()
	require.Eventually(t, func() bool { return a.Engine().Snapshot().NumActive == 0 }, 60e9, 1e6)
	st := a.Engine().Snapshot().Stats
	assert.Equal(t, st.KVBlocksTotal, st.KVBlocksFree)
}

func TestMetricsMaxModelLen(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, model.Generate(dir, model.SpecTiny, 1))
	mc, err := model.LoadConfig(dir)
	require.NoError(t, err)
	tests := []struct {
		name string
		cfg  Config
		want int
	}{
		{"flag wins", Config{MaxModelLen: 77, Model: dir}, 77},
		{"model config", Config{Model: dir}, mc.MaxPositionEmbeddings},
		{"built-in model: its spec", Config{}, model.SpecTiny.MaxPos},
		{"unreadable model: tracing default", Config{Model: filepath.Join(dir, "missing")}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, metricsMaxModelLen(tc.cfg))
		})
	}
}

// TestLongPrefillTokenThreshold: the flag reaches the scheduler: a
// 100-token prompt is prefilled 16 tokens per step, in 7 steps (one
// without the flag). The steps are counted once the app has shut down, so
// that the last step's bookkeeping, which follows the response, is done.
func TestLongPrefillTokenThreshold(t *testing.T) {
	prompt := make([]string, 100)
	for i := range prompt {
		prompt[i] = strconv.Itoa(10 + i)
	}
	body := `{"prompt":[` + strings.Join(prompt, ",") + `],"max_tokens":1}`
	for _, tc := range []struct {
		args  []string
		steps uint64
	}{
		{nil, 1},
		{[]string{"--long-prefill-token-threshold", "16"}, 7},
	} {
		a, base := startApp(t, tc.args...)
		status, m := postJSON(t, base+"/v1/completions", body)
		require.Equal(t, 200, status, "%v", m)
		require.NoError(t, a.Shutdown(context.Background()))
		assert.Equal(t, tc.steps, a.Engine().Snapshot().Steps, "%v", tc.args)
	}
}

// TestPickBackend: --device auto takes CUDA when it opens and falls back
// to the CPU, with a warning, when it does not (no GPU, old driver, no
// cuBLAS); an explicit --device reports its backend's error.
func TestPickBackend(t *testing.T) {
	cpuBE, err := kernel.Open("cpu", kernel.Options{Threads: 1})
	require.NoError(t, err)
	defer cpuBE.Close()
	noGPU := errors.New("no CUDA-capable device is detected")
	open := func(cudaErr error) func(string) (kernel.Backend, error) {
		return func(name string) (kernel.Backend, error) {
			if name == "cuda" {
				if cudaErr != nil {
					return nil, cudaErr
				}
				return cpuBE, nil // stands in for a CUDA backend
			}
			return cpuBE, nil
		}
	}
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))

	be, err := pickBackend("auto", []string{"cpu", "cuda"}, open(noGPU), log)
	require.NoError(t, err)
	assert.Same(t, cpuBE, be)
	assert.Contains(t, logs.String(), "serving on the CPU")
	assert.Contains(t, logs.String(), "no CUDA-capable device")

	_, err = pickBackend("cuda", []string{"cpu", "cuda"}, open(noGPU), log)
	assert.ErrorIs(t, err, noGPU)
	_, err = pickBackend("cuda", []string{"cpu"}, func(n string) (kernel.Backend, error) {
		return kernel.Open("no-such-"+n, kernel.Options{})
	}, log)
	assert.ErrorContains(t, err, "built without CUDA support")
}

// limitedBackend is a backend with attention limits (as CUDA has).
type limitedBackend struct {
	kernel.Backend
	args []int
	err  error
}

func (b *limitedBackend) CheckAttention(numKVHeads, headDim, blockSize, maxNumSeqs int) error {
	b.args = []int{numKVHeads, headDim, blockSize, maxNumSeqs}
	return b.err
}

// TestCheckAttention: a backend's attention limits are checked at start
// against the model and the scheduler settings; a backend without such
// limits (the CPU) is not asked.
func TestCheckAttention(t *testing.T) {
	cpuBE, err := kernel.Open("cpu", kernel.Options{Threads: 1})
	require.NoError(t, err)
	defer cpuBE.Close()
	mc := &model.Config{NumKVHeads: 8, HeadDim: 128}
	cfg := Config{BlockSize: 16, MaxNumSeqs: 256}
	require.NoError(t, checkAttention(cpuBE, mc, cfg))
	limited := &limitedBackend{Backend: cpuBE, err: errors.New("too many")}
	assert.ErrorContains(t, checkAttention(limited, mc, cfg), "too many")
	assert.Equal(t, []int{8, 128, 16, 256}, limited.args)
}

// gpuBackend stands in for a device backend: memory figures and, when
// reserve is set, a step's activation reservation.
type gpuBackend struct {
	kernel.Backend
	free, total int64
}

func (b *gpuBackend) Name() string                            { return "gpu" }
func (b *gpuBackend) MemInfo() (free, total int64, err error) { return b.free, b.total, nil }

type reservingGPU struct {
	gpuBackend
	reserve int64
	shape   kernel.StepShape
}

func (b *reservingGPU) StepBytes(s kernel.StepShape) int64 { b.shape = s; return b.reserve }

// TestKVBlocksFromDeviceMemory: with --gpu-memory-utilization the KV
// cache, null block included, fits what the fraction leaves after what is
// in use (the weights) and after a step's activations, which are allocated
// only while serving: out of memory then happens at start.
func TestKVBlocksFromDeviceMemory(t *testing.T) {
	cpuBE, err := kernel.Open("cpu", kernel.Options{Threads: 1})
	require.NoError(t, err)
	defer cpuBE.Close()
	const gib, mib = int64(1) << 30, int64(1) << 20
	cfg := Config{GPUMemoryUtil: 0.9, BlockSize: 16, MaxNumSeqs: 8}
	step := kernel.StepShape{MaxTokens: 2048, MaxSeqs: 8, Vocab: 32000}
	plain := &gpuBackend{Backend: cpuBE, free: 8 * gib, total: 10 * gib} // 2 GiB in use
	n, err := kvBlocks(cfg, plain, mib, 1024, step)
	require.NoError(t, err)
	assert.Equal(t, 7168, n, "9 GiB − 2 GiB in 1 MiB blocks, the null block among them")
	reserving := &reservingGPU{gpuBackend: *plain, reserve: gib}
	n, err = kvBlocks(cfg, reserving, mib, 1024, step)
	require.NoError(t, err)
	assert.Equal(t, 6144, n, "less the 1 GiB a step may need")
	assert.Equal(t, step, reserving.shape)
	reserving.reserve = 7 * gib
	_, err = kvBlocks(cfg, reserving, mib, 1024, step)
	assert.ErrorContains(t, err, "7168 MiB kept for a step's activations")
}
