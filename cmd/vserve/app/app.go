package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/runtime/runner"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
	"github.com/vserve/vserve/tokenizer"
	"github.com/vserve/vserve/tracing"
)

// Version is reported by /version and the startup log.
var Version = "0.1.0-dev"

// defaultKVBudget caps the automatic CPU KV cache size.
const defaultKVBudget = 2 << 30

// App is a running vserve: the HTTP server starts at once (answering 503
// while loading) and the model loads in the background.
type App struct {
	cfg    Config
	log    *slog.Logger
	stderr io.Writer

	ln      net.Listener
	httpSrv *http.Server
	srv     *server.Server
	tel     *tracing.Telemetry

	ready   chan struct{} // closed when serving or when loading failed
	loadErr error

	mu     sync.Mutex
	be     kernel.Backend
	m      *model.Model
	run    *runner.Runner
	eng    *engine.Engine
	sched  *scheduler.Scheduler
	stopCh chan struct{}
	wg     sync.WaitGroup
}

// NewLogger makes the structured logger for level, writing text to w.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.LevelKey && len(groups) == 0 {
				if l, ok := a.Value.Any().(slog.Level); ok && l == engine.LevelStep {
					a.Value = slog.StringValue("STEP")
				}
			}
			return a
		}}))
}

// Start listens, starts serving and loads the model in the background.
func Start(ctx context.Context, cfg Config, log *slog.Logger, stderr io.Writer) (*App, error) {
	a := &App{cfg: cfg, log: log, stderr: stderr, ready: make(chan struct{}), stopCh: make(chan struct{})}
	name := a.modelName()
	tc := cfg.Tracing
	tc.ModelName, tc.Logger = name, log
	tc.MaxModelLen = metricsMaxModelLen(cfg)
	tel, err := tracing.Setup(ctx, tc)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	a.tel = tel
	a.srv = server.New(server.Options{
		APIKey: cfg.APIKey, MaxBodyBytes: cfg.MaxBodyBytes, AllowedOrigins: cfg.AllowedOrigins,
		AllowedMethods: cfg.AllowedMethods, AllowedHeaders: cfg.AllowedHeaders,
		RequestTimeout: cfg.RequestTimeout, Telemetry: tel.HTTP(), Metrics: tel.MetricsHandler(),
		Version: Version, Logger: log,
	})
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = tel.Shutdown(ctx)
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	a.ln = ln
	a.httpSrv = &http.Server{Handler: a.srv, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		if err := a.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("vserve listening", "addr", ln.Addr().String(), "version", Version, "api_key_required", cfg.APIKey != "")
	go func() {
		defer a.wg.Done()
		defer close(a.ready)
		if err := a.load(); err != nil {
			a.loadErr = err
			log.Error("loading failed", "err", err)
		}
	}()
	return a, nil
}

// samplingDefaults are the request defaults --generation-config selects:
// the model's (auto) or none (vllm).
func samplingDefaults(mode string, d model.GenerationDefaults) server.SamplingDefaults {
	if mode != "auto" {
		return server.SamplingDefaults{}
	}
	return server.SamplingDefaults{Temperature: d.Temperature, TopP: d.TopP, MinP: d.MinP,
		RepetitionPenalty: d.RepetitionPenalty, TopK: d.TopK, MaxTokens: d.MaxNewTokens}
}

// describeDefaults lists the set defaults for the log, as name=value.
func describeDefaults(d server.SamplingDefaults) string {
	var parts []string
	for _, f := range []struct {
		name string
		v    *float64
	}{{"temperature", d.Temperature}, {"top_p", d.TopP}, {"min_p", d.MinP}, {"repetition_penalty", d.RepetitionPenalty}} {
		if f.v != nil {
			parts = append(parts, fmt.Sprintf("%s=%v", f.name, *f.v))
		}
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"top_k", d.TopK}, {"max_tokens", d.MaxTokens}} {
		if f.v != nil {
			parts = append(parts, fmt.Sprintf("%s=%d", f.name, *f.v))
		}
	}
	return strings.Join(parts, " ")
}

// metricsMaxModelLen is the max_model_len that tops the token-count
// histogram buckets: the flag when given, else the model's own limit, from
// its config.json or, for the built-in model, its spec (0, the tracing
// default, when the config cannot be read: loading then fails too).
func metricsMaxModelLen(cfg Config) int {
	if cfg.MaxModelLen > 0 {
		return cfg.MaxModelLen
	}
	if cfg.Model == "" {
		return builtinSpec.MaxPos
	}
	mc, err := model.LoadConfig(cfg.Model)
	if err != nil {
		return 0 // the load reports the error with its context
	}
	return runner.DefaultMaxModelLen(mc)
}

// Addr is the listening address.
func (a *App) Addr() net.Addr { return a.ln.Addr() }

// Ready is closed when the model is served or loading failed (see LoadErr).
func (a *App) Ready() <-chan struct{} { return a.ready }

// LoadErr is the loading error, valid after Ready is closed.
func (a *App) LoadErr() error { return a.loadErr }

// Engine returns the engine once loaded (nil before).
func (a *App) Engine() *engine.Engine {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.eng
}

func (a *App) modelName() string {
	if len(a.cfg.ServedModelNames) > 0 {
		return a.cfg.ServedModelNames[0]
	}
	if a.cfg.Model == "" {
		return BuiltinName
	}
	return a.cfg.Model
}

// load opens the backend, loads the model and tokenizer, sizes the KV
// cache and starts the engine.
func (a *App) load() error {
	cfg, log := a.cfg, a.log
	dir, desc := cfg.Model, ""
	if dir == "" {
		var err error
		log.Info("no --model given: serving the built-in model with random weights (gibberish output)")
		if dir, err = builtinDir(cfg.CacheDir); err != nil {
			return err
		}
		desc = BuiltinDescription
	}
	weights := "" // a hint for the backend's compute dtype; Load reports a bad config
	if mc, err := model.LoadConfig(dir); err == nil {
		weights = mc.TorchDType
	}
	be, err := openBackend(cfg.Device, kernel.Options{Threads: cfg.Threads, WeightsDType: weights}, a.log)
	if err != nil {
		return err
	}
	a.setBackend(be)
	log.Info("loading model", "dir", dir, "device", be.Name())
	t0 := time.Now()
	m, err := model.Load(dir, be, model.LoadOptions{Progress: a.progress()})
	if err != nil {
		return fmt.Errorf("load model %s: %w", dir, err)
	}
	a.mu.Lock()
	a.m = m
	a.mu.Unlock()
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		return fmt.Errorf("load tokenizer %s: %w", dir, err)
	}
	adapter, tmplDesc, err := newTokenizerAdapter(tok, cfg.ChatTemplate, m.Config.VocabSize)
	if err != nil {
		return err
	}
	maxLen := cfg.MaxModelLen
	if maxLen == 0 {
		maxLen = runner.DefaultMaxModelLen(m.Config)
	}
	if limit := runner.DefaultMaxModelLen(m.Config); maxLen > limit {
		return fmt.Errorf("--max-model-len %d exceeds the model's max_position_embeddings (or sliding window) %d", maxLen, limit)
	}
	mc := m.Config
	step := kernel.StepShape{MaxTokens: cfg.MaxNumBatchedTokens, MaxSeqs: cfg.MaxNumSeqs, Hidden: mc.HiddenSize,
		Intermediate: mc.IntermediateSize, NumHeads: mc.NumHeads, NumKVHeads: mc.NumKVHeads, HeadDim: mc.HeadDim,
		Vocab: mc.VocabSize, MaxSeqLen: maxLen}
	numBlocks, err := kvBlocks(cfg, be, m.KVBytesPerBlock(cfg.BlockSize), maxLen, step)
	if err != nil {
		return err
	}
	if err := checkAttention(be, m.Config, cfg); err != nil {
		return err
	}
	policy := scheduler.PolicyFCFS
	if cfg.SchedulingPolicy == "priority" {
		policy = scheduler.PolicyPriority
	}
	sched, err := scheduler.New(scheduler.Config{
		MaxNumSeqs: cfg.MaxNumSeqs, MaxNumBatchedTokens: cfg.MaxNumBatchedTokens, MaxModelLen: maxLen,
		LongPrefillTokenThreshold: cfg.LongPrefillTokenThreshold, Policy: policy, BlockSize: cfg.BlockSize, NumBlocks: numBlocks,
		EnablePrefixCaching: cfg.EnablePrefixCaching, ModelID: filepath.Base(dir),
	})
	if err != nil {
		return err
	}
	run, err := runner.New(m, be, runner.Config{BlockSize: cfg.BlockSize, NumBlocks: numBlocks,
		MaxNumSeqs: cfg.MaxNumSeqs, MaxNumBatchedTokens: cfg.MaxNumBatchedTokens, MaxModelLen: maxLen,
		EOSTokenIDs: tok.EOSTokenIDs()})
	if err != nil {
		return err
	}
	warm, err := warmUp(run, cfg.BlockSize, m.Config.VocabSize)
	if err != nil {
		return fmt.Errorf("warm-up forward pass: %w", err)
	}
	log.Info("warm-up forward pass done", "time", warm.Round(time.Millisecond))
	eng := engine.New(engine.Config{MaxQueuedRequests: cfg.MaxNumQueuedReqs, MaxQueuedTokens: cfg.MaxNumQueuedTokens,
		Logger: log, Hooks: a.tel.EngineHooks()}, sched, run)
	a.mu.Lock()
	a.run, a.eng, a.sched = run, eng, sched
	a.mu.Unlock()
	names := cfg.ServedModelNames
	if len(names) == 0 {
		names = []string{a.modelName()}
	}
	defaults := samplingDefaults(cfg.GenerationConfig, m.Config.GenerationDefaults)
	if defaults != (server.SamplingDefaults{}) {
		log.Info("sampling defaults from the model's generation_config.json (--generation-config vllm ignores them)",
			"defaults", describeDefaults(defaults))
	}
	a.srv.SetModel(&server.Model{Engine: eng, Tokenizer: adapter, Names: names, Root: dir, Description: desc,
		MaxModelLen: maxLen, Created: time.Now().Unix(), PriorityScheduling: policy == scheduler.PolicyPriority,
		Defaults: defaults})
	log.Info("model ready", "model", names[0], "params", m.Config.NumParams(), "max_model_len", maxLen,
		"kv_blocks", numBlocks-1, "block_size", cfg.BlockSize, "chat_template", tmplDesc,
		"prefix_caching", cfg.EnablePrefixCaching, "load_time", time.Since(t0).Round(time.Millisecond))
	if cfg.StatsInterval > 0 {
		a.wg.Add(1)
		go a.logStats(eng)
	}
	return nil
}

func (a *App) setBackend(be kernel.Backend) {
	a.mu.Lock()
	a.be = be
	a.mu.Unlock()
}

// warmUp runs one small forward pass (and drops its state) before serving,
// so the first request does not pay for faulting in memory-mapped weights
// and first-use initialisation. It writes block 1 of the KV cache, which
// the scheduler has not handed out yet; step 0 marks an output that the
// scheduler did not produce.
func warmUp(run *runner.Runner, blockSize, vocab int) (time.Duration, error) {
	t0 := time.Now()
	n := min(blockSize, vocab-1, 8)
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(1 + i)
	}
	p := scheduler.DefaultSamplingParams(1)
	p.Temperature = 0
	const id = "vserve-warmup"
	out := &scheduler.Output{
		NewRequests:        []scheduler.NewRequest{{ID: id, PromptTokenIDs: ids, BlockIDs: []int32{1}, Params: &p}},
		NumScheduledTokens: map[string]int{id: n}, TotalNumScheduledTokens: n,
	}
	if _, err := run.Execute(out); err != nil {
		return 0, err
	}
	if _, err := run.Execute(&scheduler.Output{FinishedRequestIDs: []string{id}, NumScheduledTokens: map[string]int{}}); err != nil {
		return 0, err
	}
	if run.NumRequests() != 0 {
		return 0, fmt.Errorf("runner kept %d requests after warm-up", run.NumRequests())
	}
	return time.Since(t0), nil
}

// openBackend opens the kernel backend for --device.
func openBackend(device string, opts kernel.Options, log *slog.Logger) (kernel.Backend, error) {
	return pickBackend(device, kernel.Names(), func(name string) (kernel.Backend, error) {
		return kernel.Open(name, opts)
	}, log)
}

// pickBackend opens the backend for --device among the registered names.
// With auto it takes CUDA when the binary has it and it opens (a GPU, its
// driver and cuBLAS), and the CPU otherwise, saying why in the log.
func pickBackend(device string, names []string, open func(string) (kernel.Backend, error), log *slog.Logger) (kernel.Backend, error) {
	name := device
	if device == "auto" {
		name = "cpu"
		if slices.Contains(names, "cuda") {
			be, err := open("cuda")
			if err == nil {
				return be, nil
			}
			log.Warn("--device auto: the CUDA backend did not open; serving on the CPU", "err", err)
		}
	}
	be, err := open(name)
	if errors.Is(err, kernel.ErrUnknownBackend) && name == "cuda" {
		return nil, fmt.Errorf("--device cuda: this vserve binary was built without CUDA support (rebuild with `go build -tags cuda`), or use --device cpu: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("--device %s: %w", device, err)
	}
	return be, nil
}

// attentionLimits is an optional backend capability: limits of its
// attention kernels that a model and the scheduler's settings may exceed.
type attentionLimits interface {
	CheckAttention(numKVHeads, headDim, blockSize, maxNumSeqs int) error
}

// checkAttention fails at start, rather than at the first step that needs
// it, when the backend cannot run attention for the batches this model and
// these settings allow.
func checkAttention(be kernel.Backend, mc *model.Config, cfg Config) error {
	if c, ok := be.(attentionLimits); ok {
		return c.CheckAttention(mc.NumKVHeads, mc.HeadDim, cfg.BlockSize, cfg.MaxNumSeqs)
	}
	return nil
}

// memoryInfo is an optional backend capability (device memory).
type memoryInfo interface {
	MemInfo() (free, total int64, err error)
}

// stepReserver is an optional backend capability: the device memory one
// step may need besides the weights and the KV cache.
type stepReserver interface {
	StepBytes(kernel.StepShape) int64
}

// kvBlocks derives the number of KV blocks (including the null block) from
// the memory budget and checks that one full-length request fits.
func kvBlocks(cfg Config, be kernel.Backend, perBlock int64, maxLen int, step kernel.StepShape) (int, error) {
	blocksPerSeq := (maxLen + cfg.BlockSize - 1) / cfg.BlockSize
	budget := cfg.KVCacheMemory
	source := "--kv-cache-memory"
	nullBlock := int64(0) // the null block's memory, when the budget must hold it
	if budget == 0 {
		if mi, ok := be.(memoryInfo); ok && be.Name() != "cpu" {
			free, total, err := mi.MemInfo()
			if err != nil {
				return 0, fmt.Errorf("device memory: %w", err)
			}
			used := total - free // the weights and everything else loaded so far
			reserve := int64(0)
			if r, ok := be.(stepReserver); ok {
				reserve = r.StepBytes(step) // activations, allocated while serving
			}
			budget = int64(cfg.GPUMemoryUtil*float64(total)) - used - reserve
			nullBlock = perBlock
			source = fmt.Sprintf("--gpu-memory-utilization %.2f of %d MiB (%d MiB in use, %d MiB kept for a step's activations)",
				cfg.GPUMemoryUtil, total>>20, used>>20, reserve>>20)
		} else {
			budget = min(int64(cfg.MaxNumSeqs*blocksPerSeq)*perBlock, defaultKVBudget)
			source = "the automatic CPU budget"
		}
	}
	n := (budget - nullBlock) / perBlock
	if n < int64(blocksPerSeq) {
		return 0, fmt.Errorf("KV cache: %s gives %d bytes = %d blocks of %d tokens (%d bytes each), but one request of --max-model-len %d needs %d blocks: raise --kv-cache-memory or lower --max-model-len",
			source, budget, n, cfg.BlockSize, perBlock, maxLen, blocksPerSeq)
	}
	return int(n) + 1, nil
}

// progress returns the weight-loading progress callback: a progress bar on
// a terminal, nothing otherwise.
func (a *App) progress() func(done, total int64) {
	f, ok := a.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	var bar *progressbar.ProgressBar
	return func(done, total int64) {
		if bar == nil {
			bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(f), progressbar.OptionShowBytes(true),
				progressbar.OptionSetDescription("loading weights"), progressbar.OptionClearOnFinish())
		}
		_ = bar.Set64(done)
		if done >= total {
			_ = bar.Finish()
		}
	}
}

// logStats logs the engine's counters periodically while it is busy.
func (a *App) logStats(eng *engine.Engine) {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.StatsInterval)
	defer t.Stop()
	var lastSteps uint64
	for {
		select {
		case <-a.stopCh:
			return
		case <-t.C:
		}
		s := eng.Snapshot()
		if s.Steps == lastSteps {
			continue
		}
		lastSteps = s.Steps
		a.log.Info("engine", "step", s.Stats.Step, "running", s.Stats.NumRunning, "waiting", s.Stats.NumWaiting,
			"kv_usage", fmt.Sprintf("%.1f%%", 100*s.Stats.KVUsage), "prefix_cache_hits", s.Stats.PrefixCacheHits,
			"prefix_cache_queries", s.Stats.PrefixCacheQueries, "preemptions", s.Stats.NumPreemptions)
	}
}

// Shutdown stops admitting, lets in-flight requests finish within the
// grace period of ctx, then aborts the rest and releases everything.
func (a *App) Shutdown(ctx context.Context) error {
	a.srv.SetClosing()
	<-a.ready // loading is not interruptible; wait for it
	a.mu.Lock()
	eng := a.eng
	a.mu.Unlock()
	var errs []error
	if eng != nil {
		if err := eng.Shutdown(ctx); err != nil {
			a.log.Warn("grace period over: aborted in-flight requests", "err", err)
		}
	}
	// The engine has finished or aborted every request, so what is left are
	// idle connections and ones a client opened but never used, which
	// net/http only closes after they have been new for 5 s: wait longer
	// than that, then force the rest closed (a warning, not a failure).
	hctx, cancel := context.WithTimeout(context.Background(), httpShutdownWait)
	defer cancel()
	if err := a.httpSrv.Shutdown(hctx); err != nil {
		a.log.Warn("closing HTTP connections that did not go idle", "err", err)
		_ = a.httpSrv.Close()
	}
	close(a.stopCh)
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.run != nil {
		errs = append(errs, a.run.Close())
	}
	if a.m != nil {
		errs = append(errs, a.m.Close())
	}
	if a.be != nil {
		errs = append(errs, a.be.Close())
	}
	// Spans that cannot be flushed (the collector is down or slow) are lost,
	// as while serving: a warning, not a failed shutdown.
	tctx, tcancel := context.WithTimeout(context.Background(), telemetryShutdownWait)
	defer tcancel()
	if err := a.tel.Shutdown(tctx); err != nil {
		a.log.Warn("tracing: the last spans were not all exported at shutdown", "err", err)
	}
	return errors.Join(errs...)
}

// httpShutdownWait exceeds net/http's 5 s rule for never-used connections.
const httpShutdownWait = 10 * time.Second

// telemetryShutdownWait bounds the flush of the last spans (a variable for
// tests).
var telemetryShutdownWait = 5 * time.Second

// Run starts vserve and serves until ctx is cancelled (SIGINT/SIGTERM in
// main), then shuts down gracefully. It returns the loading error, if any.
func Run(ctx context.Context, cfg Config, log *slog.Logger, stderr io.Writer) error {
	a, err := Start(ctx, cfg, log, stderr)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-a.Ready():
		if a.LoadErr() != nil {
			_ = a.Shutdown(context.Background())
			return a.LoadErr()
		}
		<-ctx.Done()
	}
	log.Info("shutting down", "grace", cfg.ShutdownGrace)
	gctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	return a.Shutdown(gctx)
}
