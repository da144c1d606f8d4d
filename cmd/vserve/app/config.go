package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/tracing"
)

// Config is the parsed command line.
type Config struct {
	Model               string   // HF model directory; "" = the built-in random model
	ServedModelNames    []string // names accepted in requests; first is reported
	Host                string
	Port                int
	MaxModelLen         int // 0: the model's max_position_embeddings
	MaxNumSeqs          int
	MaxNumBatchedTokens int
	// LongPrefillTokenThreshold caps one request's prefill tokens per step
	// (0: no cap), vLLM's --long-prefill-token-threshold.
	LongPrefillTokenThreshold int
	BlockSize                 int
	EnablePrefixCaching       bool
	SchedulingPolicy          string // fcfs | priority
	GPUMemoryUtil             float64
	KVCacheMemory             int64 // bytes; 0 = automatic
	APIKey                    string
	ChatTemplate              string // file overriding the model's template
	GenerationConfig          string // auto: the model's generation_config.json sampling defaults; vllm: none
	Device                    string // cpu | cuda | auto
	Threads                   int
	MaxNumQueuedReqs          int
	MaxNumQueuedTokens        int
	RequestTimeout            time.Duration
	ShutdownGrace             time.Duration
	AllowedOrigins            []string
	AllowedMethods            []string
	AllowedHeaders            []string
	MaxBodyBytes              int64
	CacheDir                  string // where the built-in model is generated
	LogLevel                  slog.Level
	StatsInterval             time.Duration
	Tracing                   tracing.Config
}

// ParseFlags parses and validates args (without the program name). The
// usage text and -h output go to out.
func ParseFlags(args []string, out io.Writer) (Config, error) {
	c := Config{Tracing: tracing.DefaultConfig()}
	fs := flag.NewFlagSet("vserve", flag.ContinueOnError)
	fs.SetOutput(out)
	var served, origins, methods, headers, kvMem, logLevel, policy string
	var timeout, grace, statsEvery float64
	noPrefix := false
	fs.StringVar(&c.Model, "model", "", "Hugging Face model directory (config.json, *.safetensors, tokenizer.json); empty serves the built-in random-weight model")
	fs.StringVar(&served, "served-model-name", "", "model name(s) in the API, comma-separated (default: --model, or vserve-tiny-random)")
	fs.StringVar(&c.Host, "host", "0.0.0.0", "address to listen on")
	fs.IntVar(&c.Port, "port", 8000, "port to listen on")
	fs.IntVar(&c.MaxModelLen, "max-model-len", 0, "prompt + output tokens per request at most (default: the model's max_position_embeddings)")
	fs.IntVar(&c.MaxNumSeqs, "max-num-seqs", 256, "running requests per step at most")
	fs.IntVar(&c.MaxNumBatchedTokens, "max-num-batched-tokens", 2048, "tokens per step at most (longer prompts are chunked)")
	fs.IntVar(&c.LongPrefillTokenThreshold, "long-prefill-token-threshold", 0, "prefill tokens of one request per step at most, so long prompts share steps with others (0: no cap)")
	fs.IntVar(&c.BlockSize, "block-size", 16, "tokens per KV cache block")
	fs.BoolVar(&c.EnablePrefixCaching, "enable-prefix-caching", true, "reuse KV blocks of identical prompt prefixes")
	fs.BoolVar(&noPrefix, "no-enable-prefix-caching", false, "disable prefix caching")
	fs.StringVar(&policy, "scheduling-policy", "fcfs", "fcfs or priority (lower priority value first)")
	fs.Float64Var(&c.GPUMemoryUtil, "gpu-memory-utilization", 0.9, "fraction of GPU memory for weights, activations and KV cache (cuda)")
	fs.StringVar(&kvMem, "kv-cache-memory", "", "KV cache size in bytes for the CPU (suffixes KiB MiB GiB, K M G); default: enough for max-num-seqs full-length requests, at most 2GiB")
	fs.StringVar(&c.APIKey, "api-key", "", "require 'Authorization: Bearer <key>' (health, version and metrics stay public; default: $VLLM_API_KEY)")
	fs.StringVar(&c.ChatTemplate, "chat-template", "", "Jinja chat template file overriding the model's")
	fs.StringVar(&c.GenerationConfig, "generation-config", "auto", "auto: sampling defaults (temperature, top_p, top_k, min_p, repetition_penalty, max_new_tokens) from the model's generation_config.json for requests that leave them unset; vllm: the API's defaults")
	fs.StringVar(&c.Device, "device", "auto", "cpu, cuda or auto (cuda when this binary has it)")
	fs.IntVar(&c.Threads, "threads", 0, "CPU worker threads (default GOMAXPROCS)")
	fs.IntVar(&c.MaxNumQueuedReqs, "max-num-queued-reqs", 4096, "requests waiting to be scheduled at most; past it 429 (0: unbounded)")
	fs.IntVar(&c.MaxNumQueuedTokens, "max-num-queued-tokens", 0, "prompt tokens waiting to be scheduled at most; past it 429 (0: unbounded)")
	fs.Float64Var(&timeout, "request-timeout", 0, "default per-request deadline in seconds (0: none); the request's 'timeout' overrides it")
	fs.Float64Var(&grace, "shutdown-grace", 30, "seconds in-flight requests get to finish on SIGTERM before they are aborted")
	fs.StringVar(&origins, "allowed-origins", "*", "CORS allowed origins, comma-separated")
	fs.StringVar(&methods, "allowed-methods", "*", "CORS allowed methods, comma-separated")
	fs.StringVar(&headers, "allowed-headers", "*", "CORS allowed headers, comma-separated (*: whatever a preflight asks for)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 8<<20, "request body size limit (413 past it)")
	fs.StringVar(&c.CacheDir, "cache-dir", "", "directory for the generated built-in model (default: the user cache dir)")
	fs.StringVar(&logLevel, "log-level", "info", "step, debug, info, warn or error (step logs every engine step)")
	fs.Float64Var(&statsEvery, "stats-interval", 10, "seconds between engine statistics log lines (0: off)")
	c.Tracing.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		if c.Model == "" && fs.NArg() == 1 {
			c.Model = fs.Arg(0) // vllm serve <model>
		} else {
			return c, fmt.Errorf("unexpected arguments %q", fs.Args())
		}
	}
	if noPrefix {
		c.EnablePrefixCaching = false
	}
	c.ServedModelNames = splitList(served)
	if c.APIKey == "" {
		c.APIKey = os.Getenv("VLLM_API_KEY") // as in vLLM
	}
	c.AllowedOrigins = splitList(origins)
	c.AllowedMethods = splitList(methods)
	c.AllowedHeaders = splitList(headers)
	c.SchedulingPolicy = policy
	c.RequestTimeout = seconds(timeout)
	c.ShutdownGrace = seconds(grace)
	c.StatsInterval = seconds(statsEvery)
	var errs []error
	if kvMem != "" {
		n, err := ParseBytes(kvMem)
		if err != nil {
			errs = append(errs, fmt.Errorf("--kv-cache-memory: %w", err))
		}
		c.KVCacheMemory = n
	}
	lvl, err := parseLevel(logLevel)
	if err != nil {
		errs = append(errs, err)
	}
	c.LogLevel = lvl
	errs = append(errs, c.validate(timeout, grace, statsEvery))
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Config) validate(timeout, grace, statsEvery float64) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Port < 0 || c.Port > 65535 {
		bad("--port must be in [0, 65535], got %d", c.Port)
	}
	if c.MaxModelLen < 0 {
		bad("--max-model-len must be positive, got %d", c.MaxModelLen)
	}
	if c.MaxNumSeqs < 1 {
		bad("--max-num-seqs must be at least 1, got %d", c.MaxNumSeqs)
	}
	if c.LongPrefillTokenThreshold < 0 {
		bad("--long-prefill-token-threshold must not be negative, got %d", c.LongPrefillTokenThreshold)
	}
	if c.MaxNumBatchedTokens < 1 {
		bad("--max-num-batched-tokens must be at least 1, got %d", c.MaxNumBatchedTokens)
	} else if c.MaxNumBatchedTokens < c.MaxNumSeqs {
		bad("--max-num-batched-tokens (%d) must be at least --max-num-seqs (%d)", c.MaxNumBatchedTokens, c.MaxNumSeqs)
	}
	switch c.BlockSize {
	case 1, 2, 4, 8, 16, 32, 64, 128:
	default:
		bad("--block-size must be a power of two in [1, 128], got %d", c.BlockSize)
	}
	if c.SchedulingPolicy != "fcfs" && c.SchedulingPolicy != "priority" {
		bad("--scheduling-policy must be fcfs or priority, got %q", c.SchedulingPolicy)
	}
	if c.GenerationConfig != "auto" && c.GenerationConfig != "vllm" {
		bad("--generation-config must be auto or vllm, got %q", c.GenerationConfig)
	}
	if !(c.GPUMemoryUtil > 0 && c.GPUMemoryUtil <= 1) {
		bad("--gpu-memory-utilization must be in (0, 1], got %v", c.GPUMemoryUtil)
	}
	if c.KVCacheMemory < 0 {
		bad("--kv-cache-memory must be positive")
	}
	switch c.Device {
	case "cpu", "cuda", "auto":
	default: // a backend of a build tag (sim: -tags simdevice)
		if !slices.Contains(kernel.Names(), c.Device) {
			bad("--device must be cpu, cuda or auto, got %q", c.Device)
		}
	}
	if c.Threads < 0 {
		bad("--threads must not be negative, got %d", c.Threads)
	}
	if c.MaxNumQueuedReqs < 0 || c.MaxNumQueuedTokens < 0 {
		bad("--max-num-queued-reqs and --max-num-queued-tokens must not be negative")
	}
	if !(timeout >= 0) || math.IsInf(timeout, 0) {
		bad("--request-timeout must be a non-negative number of seconds, got %v", timeout)
	}
	if !(grace >= 0) || math.IsInf(grace, 0) {
		bad("--shutdown-grace must be a non-negative number of seconds, got %v", grace)
	}
	if !(statsEvery >= 0) {
		bad("--stats-interval must not be negative, got %v", statsEvery)
	}
	if c.MaxBodyBytes < 1 {
		bad("--max-body-bytes must be positive, got %d", c.MaxBodyBytes)
	}
	for _, n := range c.ServedModelNames {
		if strings.TrimSpace(n) == "" {
			bad("--served-model-name has an empty name")
		}
	}
	if err := c.Tracing.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func seconds(f float64) time.Duration {
	if !(f > 0) || math.IsInf(f, 0) {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "step":
		return engine.LevelStep, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level must be step, debug, info, warn or error, got %q", s)
}

// ParseBytes reads a byte count: a plain integer or one with a suffix
// K/M/G/T (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024).
func ParseBytes(in string) (int64, error) {
	s := strings.TrimSpace(in)
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"B", 1},
	}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f*mult >= 1) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is not a positive byte count (e.g. 2GiB, 512MiB, 1000000)", in)
	}
	return int64(f * mult), nil
}
