// Command overhead measures what tracing costs a running vserve: it starts
// one vserve process per tracing configuration (off; journey tracing 1.0;
// journey 1.0 with step tracing 1.0 and rich snapshots 0.1), all exporting
// to an OTLP sink in this process that reads and discards what it gets,
// sends the same completions to each in interleaved rounds (ordered by a
// balanced Latin square, so drift on a shared machine falls on every
// configuration alike: see roundOrder; --rounds is rounded up to a whole
// number of its cycles), and reports per configuration the server's
// CPU time per request (the vserve process's threads' time on a CPU, from /proc) and
// its output-token throughput, as medians over the rounds and as the
// difference to tracing off.
//
// A round's CPU is read once the server has settled after it (no CPU used
// for a while): a server whose cores are all busy exports little while the
// load lasts (the upload goroutine waits for the network poller) and sends
// most of its spans after the round, which still counts. Settling also
// keeps one round's spans from piling onto the next's in the export queue.
// Spans a server lost (dropped at its full queue, or in failed uploads,
// as its /metrics counts them) are reported: their export
// was not paid for.
//
//	go build -o /tmp/vserve ./cmd/vserve
//	go run ./tracing/e2e/overhead --vserve /tmp/vserve [--model DIR] [--rounds 12] [--baseline /tmp/vserve-old]
//
// Without --model, a random Llama of the shape --spec (default the
// TinyStories 15M shape) is generated into a temporary directory. Linux
// only (/proc).
//
// The paired differences vary by about ±100 µs per request from round to
// round, far more than tracing costs. --perf-freq (perf.go) records the
// servers with Linux perf during the rounds and reports tracing's share of
// each server's samples times its CPU per request, the figure
// docs/tracing-overhead.md quotes:
//
//	go build -tags simdevice -o /tmp/vserve-sim ./cmd/vserve
//	go run ./tracing/e2e/overhead --vserve /tmp/vserve-sim --device sim --rounds 10 --requests 800 --perf-freq 1999
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"

	"github.com/vserve/vserve/bench"
	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/tokenizer"
	"github.com/vserve/vserve/tracing/internal/otlpsink"
)

type options struct {
	vserve, modelDir string
	baseline         string
	spec             string
	rounds, perRound int
	concurrency      int
	inputLen         int
	outputLen        int
	protocol         string
	basePort         int
	serverProcs      int
	warmup           int
	kvCacheMemory    string
	device           string
	perfFreq         int
}

// config is one tracing configuration and the server that runs it.
type config struct {
	name   string
	binary string
	flags  []string
	cmd    *exec.Cmd
	url    string
	log    string        // the server's log file
	cpu    []float64     // µs of server CPU per request, per round
	tput   []float64     // output tokens/s, per round
	perf   profileShares // its perf samples during the rounds (--perf-freq)
	// lost is the spans the server's /metrics counted as dropped at a full
	// export queue or in failed uploads, read after the last round; -1
	// when it does not show them (an older build: its log is read then).
	lost int
}

func main() {
	var o options
	flag.StringVar(&o.vserve, "vserve", "", "vserve binary (required)")
	flag.StringVar(&o.baseline, "baseline", "", "a second vserve binary (say, built from the previous commit) whose traced configurations run in the same rounds, for before-and-after figures")
	flag.StringVar(&o.modelDir, "model", "", "model directory (default: a random model of --spec, generated)")
	flag.StringVar(&o.spec, "spec", "15M", "shape of the generated model (tiny, 15M, 42M, 110M): big enough that batches form (on the tiny model a step is so short that requests run one at a time and step tracing pays per token)")
	flag.IntVar(&o.rounds, "rounds", 12, "measured rounds per configuration, rounded up to a multiple of the order's cycle (6 for the 3 configurations, 10 for the 5 with --baseline)")
	flag.IntVar(&o.perRound, "requests", 400, "requests per round")
	flag.IntVar(&o.concurrency, "concurrency", 16, "requests in flight")
	flag.IntVar(&o.inputLen, "input-len", 98, "prompt tokens per request")
	flag.IntVar(&o.outputLen, "output-len", 64, "output tokens per request")
	flag.StringVar(&o.protocol, "protocol", "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL of the traced servers (grpc, vserve's default, or http/protobuf)")
	flag.IntVar(&o.basePort, "base-port", 18100, "first of the servers' ports")
	flag.IntVar(&o.warmup, "warmup", 0, "warm-up requests per server before the rounds (0: one round's); a server reaches its steady state once its KV cache was written all over and its buffers grew to their working sizes")
	flag.StringVar(&o.kvCacheMemory, "kv-cache-memory", "256MiB", "each server's --kv-cache-memory: small enough that the warm-up writes all of it (the first write of a page faults), and that the servers fit in memory together")
	flag.StringVar(&o.device, "device", "cpu", "each server's --device: cpu, or sim (a binary built with -tags simdevice) for the host side of a GPU server, whose forward pass does not run on the cores that serve")
	flag.IntVar(&o.perfFreq, "perf-freq", 0, "when set (Hz, e.g. 1999): record the servers' call stacks with Linux perf (on PATH, allowed to profile them) during the rounds, and report the share of each server's samples in tracing's code times its CPU per request, which resolves what the paired differences cannot")
	flag.IntVar(&o.serverProcs, "server-procs", 1, "GOMAXPROCS of each server (0: the machine's); one core keeps the servers' CPU time free of idle-worker wakeups")
	flag.Parse()
	if o.vserve == "" {
		log.Fatal("--vserve is required")
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func run(o options) error {
	ctx := context.Background()
	if o.modelDir == "" {
		dir, err := os.MkdirTemp("", "overhead-model-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		spec, ok := model.SpecByName(o.spec)
		if !ok {
			return fmt.Errorf("--spec %q: unknown shape", o.spec)
		}
		if err := model.Generate(dir, spec, 20260101); err != nil {
			return err
		}
		o.modelDir = dir
	}
	sink, err := otlpsink.Start(o.protocol)
	if err != nil {
		return err
	}
	defer sink.Close()

	traced := []string{"--otlp-traces-endpoint", sink.Endpoint}
	journey := append(slices.Clone(traced), "--enable-journey-tracing", "--journey-tracing-sample-rate", "1")
	configs := []*config{
		{name: "tracing off"},
		{name: "journey 1.0", flags: journey},
		{name: "journey 1.0 + steps 1.0 / rich 0.1", flags: append(slices.Clone(journey),
			"--step-tracing-enabled", "--step-tracing-sample-rate", "1", "--step-tracing-rich-subsample-rate", "0.1")},
	}
	for _, c := range configs {
		c.binary = o.vserve
	}
	if o.baseline != "" {
		for _, c := range slices.Clone(configs[1:]) {
			configs = append(configs, &config{name: c.name + " (baseline)", binary: o.baseline, flags: c.flags})
		}
	}
	for i, c := range configs {
		if err := c.start(ctx, o, o.basePort+i); err != nil {
			return err
		}
		defer c.stop()
	}

	tok, err := tokenizer.LoadDir(o.modelDir)
	if err != nil {
		return err
	}
	prompts, err := bench.RandomPrompts(tok, o.perRound, bench.LenRange{Mean: o.inputLen}, bench.LenRange{Mean: o.outputLen}, 1)
	if err != nil {
		return err
	}
	clients := make([]*bench.Client, len(configs))
	for i, c := range configs {
		clients[i] = bench.NewClient(bench.Target{Name: c.name, BaseURL: c.url, API: bench.Completions}, o.concurrency)
		// Exact output lengths, greedy: the same work in every round.
		clients[i].IgnoreEOS = true
		clients[i].Temperature = new(0.0)
		if err := clients[i].ResolveModel(ctx); err != nil {
			return err
		}
	}
	warmup := o.warmup
	if warmup <= 0 {
		warmup = o.perRound
	}
	for i := range configs { // in turn: all servers go into the rounds warm
		for sent := 0; sent < warmup; sent += len(prompts) {
			if _, _, err := bench.Run(ctx, clients[i].Do, prompts[:min(warmup-sent, len(prompts))], bench.LoadConfig{Concurrency: o.concurrency}); err != nil {
				return err
			}
		}
	}
	if r := balancedRounds(o.rounds, len(configs)); r != o.rounds {
		fmt.Printf("--rounds %d rounded up to %d, a multiple of %d, over which the order of the %d configurations is balanced\n",
			o.rounds, r, orderCycle(len(configs)), len(configs))
		o.rounds = r
	}
	fmt.Printf("%d rounds x %d requests (prompt %d, output %d tokens, concurrency %d), servers with GOMAXPROCS %d, OTLP %s to a discarding sink\n",
		o.rounds, o.perRound, o.inputLen, o.outputLen, o.concurrency, o.serverProcs, o.protocol)
	var perf *perfRecorder
	if o.perfFreq > 0 {
		pids := make([]int, len(configs))
		for i, c := range configs {
			pids[i] = c.cmd.Process.Pid
		}
		if perf, err = startPerf(o.perfFreq, pids); err != nil {
			return err
		}
		defer perf.abort()
	}
	for r := range o.rounds {
		for _, i := range roundOrder(len(configs), r) {
			if err := configs[i].round(ctx, clients[i], prompts, o.concurrency); err != nil {
				return err
			}
		}
	}
	if perf != nil {
		shares, err := perf.stop()
		if err != nil {
			return err
		}
		for _, c := range configs {
			c.perf = shares[c.cmd.Process.Pid]
		}
	}
	for _, c := range configs {
		c.lost = lostSpans(c.url)
		c.stop() // the last spans are flushed to the sink
	}
	report(configs, sink)
	if sink.Requests() == 0 {
		return errors.New("the traced servers exported nothing to the sink")
	}
	return nil
}

// orderCycle is the number of rounds after which roundOrder repeats: n for
// an even number of configurations, 2n for an odd one.
func orderCycle(n int) int {
	if n%2 == 0 {
		return n
	}
	return 2 * n
}

// balancedRounds rounds rounds up to a multiple of orderCycle(n), the only
// round counts over which roundOrder is balanced.
func balancedRounds(rounds, n int) int {
	c := orderCycle(n)
	return max(1, (rounds+c-1)/c) * c
}

// roundOrder is the order in which the n configurations run in round r: a
// row of a Williams design, a balanced Latin square (for an odd n, the
// square and its mirror image). Over every orderCycle(n) consecutive rounds
// (from round 0), each configuration runs in every position equally often
// and directly after every other configuration equally often, so drift
// within a round, and what a configuration leaves behind for the next,
// fall on every configuration alike.
func roundOrder(n, r int) []int {
	r %= orderCycle(n)
	order := make([]int, n)
	for i := range order {
		// The first row is 0, 1, n-1, 2, n-2, ...; row k adds k.
		first := (i + 1) / 2
		if i%2 == 0 {
			first = (n - i/2) % n
		}
		order[i] = (first + r) % n
	}
	if r >= n {
		slices.Reverse(order)
	}
	return order
}

func (c *config) start(ctx context.Context, o options, port int) error {
	args := append([]string{"--model", o.modelDir, "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--kv-cache-memory", o.kvCacheMemory, "--device", o.device}, c.flags...)
	c.cmd = exec.CommandContext(ctx, c.binary, args...)
	c.cmd.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="+o.protocol)
	if o.serverProcs > 0 {
		c.cmd.Env = append(c.cmd.Env, "GOMAXPROCS="+strconv.Itoa(o.serverProcs))
	}
	logf, err := os.Create(filepath.Join(os.TempDir(), fmt.Sprintf("overhead-vserve-%d.log", port)))
	if err != nil {
		return err
	}
	c.log = logf.Name()
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	c.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(c.url + "/health"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: not healthy after 60 s (log in %s)", c.name, logf.Name())
}

func (c *config) stop() {
	if c.cmd != nil && c.cmd.Process != nil && c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		_ = c.cmd.Wait()
	}
}

// round sends prompts once and records the server's CPU per request and
// its throughput.
func (c *config) round(ctx context.Context, client *bench.Client, prompts []bench.Prompt, concurrency int) error {
	before, err := processCPU(c.cmd.Process.Pid)
	if err != nil {
		return err
	}
	results, wall, err := bench.Run(ctx, client.Do, prompts, bench.LoadConfig{Concurrency: concurrency})
	if err != nil {
		return err
	}
	after, err := settledCPU(c.cmd.Process.Pid)
	if err != nil {
		return err
	}
	tokens := 0
	for _, r := range results {
		if !r.OK() {
			return fmt.Errorf("%s: request failed: %s", c.name, r.Err)
		}
		tokens += r.OutputTokens
	}
	c.cpu = append(c.cpu, float64((after-before).Microseconds())/float64(len(results)))
	c.tput = append(c.tput, float64(tokens)/wall.Seconds())
	return nil
}

// settledCPU waits until process pid has used less than settledBelow of
// CPU in a settleInterval (at most settleMax) and returns its CPU time.
func settledCPU(pid int) (time.Duration, error) {
	const (
		settleInterval = 100 * time.Millisecond
		settledBelow   = 2 * time.Millisecond
		settleMax      = 30 * time.Second
	)
	last, err := processCPU(pid)
	for start := time.Now(); err == nil && time.Since(start) < settleMax; {
		time.Sleep(settleInterval)
		var now time.Duration
		if now, err = processCPU(pid); err == nil && now-last < settledBelow {
			return now, nil
		}
		last = now
	}
	return last, err
}

// processCPU is the CPU time of process pid: the sum over its threads of
// the first field of /proc/<pid>/task/<tid>/schedstat (nanoseconds on a
// CPU). Go's threads live as long as the process, so differences are exact.
func processCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("process %d: no /proc/%d/task/*/schedstat", pid, pid)
	}
	var total time.Duration
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited
		}
		if err != nil {
			return 0, err
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, fmt.Errorf("%s: empty", path)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}

// report prints, per configuration, the medians over rounds and the
// median of its per-round differences to tracing off (paired: the rounds
// of one index ran back to back), with their interquartile range.
func report(configs []*config, s *otlpsink.Sink) {
	base := configs[0]
	fmt.Printf("\n| configuration | server CPU µs/request | paired difference to off: median [IQR] | output tok/s | paired throughput change: median [IQR] |\n|---|---|---|---|---|\n")
	for _, c := range configs {
		dcpu := make([]float64, len(c.cpu))
		dtput := make([]float64, len(c.tput))
		for i := range c.cpu {
			dcpu[i] = c.cpu[i] - base.cpu[i]
			dtput[i] = 100 * (c.tput[i]/base.tput[i] - 1)
		}
		fmt.Printf("| %s | %.0f | %+.0f µs [%+.0f, %+.0f] | %.0f | %+.1f %% [%+.1f, %+.1f] |\n", c.name,
			median(c.cpu), median(dcpu), quantile(dcpu, 0.25), quantile(dcpu, 0.75),
			median(c.tput), median(dtput), quantile(dtput, 0.25), quantile(dtput, 0.75))
	}
	reportPerf(configs)
	fmt.Printf("\nsink: %d export requests, %.1f MB\n", s.Requests(), float64(s.Bytes())/1e6)
	for _, c := range configs {
		fmt.Printf("%s, CPU µs/request per round: %s\n", c.name, formatAll(c.cpu))
	}
	for _, c := range configs {
		if c.lost > 0 {
			fmt.Printf("%s: LOST %d spans (dropped at its full export queue or in failed uploads, by its /metrics): their export is not in its figures\n", c.name, c.lost)
		}
		if c.lost >= 0 {
			continue
		}
		if n, err := droppedSpans(c.log); err != nil {
			fmt.Printf("%s: reading its log: %v\n", c.name, err)
		} else if n > 0 {
			fmt.Printf("%s: DROPPED spans, %d or more (its export queue was full; the log is rate-limited): their export is not in its figures\n", c.name, n)
		}
	}
}

// reportPerf prints tracing's share of each server's perf samples, times
// its median CPU per request (nothing without --perf-freq).
func reportPerf(configs []*config) {
	if configs[0].perf.samples == 0 {
		return
	}
	fmt.Printf("\n| configuration | perf samples | in tracing's code | tracing's CPU per request ± 1σ | metrics' share |\n|---|---|---|---|---|\n")
	for _, c := range configs {
		p := c.perf
		if p.samples == 0 {
			fmt.Printf("| %s | 0 | | | |\n", c.name)
			continue
		}
		n := float64(p.samples)
		share := float64(p.tracing) / n
		sigma := math.Sqrt(share * (1 - share) / n) // of the share, sampled binomially
		cpu := median(c.cpu)
		fmt.Printf("| %s | %d | %d (%.3f %%) | %.1f ± %.1f µs | %.2f %% |\n", c.name, p.samples, p.tracing, 100*share,
			share*cpu, sigma*cpu, 100*float64(p.metrics)/n)
	}
}

// lostSpans reads from the server's /metrics the spans it dropped at a full
// export queue or lost in failed uploads: the samples of the OpenTelemetry
// SDK's span-processor and span-exporter counters that carry an
// error_type. It returns -1 when the server does not show those counters
// (tracing off, or a build from before them) or cannot be read.
func lostSpans(baseURL string) int {
	res, err := http.Get(baseURL + "/metrics")
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	parser := expfmt.NewTextParser(prommodel.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		return -1
	}
	lost, found := 0, false
	for _, name := range []string{"otel_sdk_processor_span_processed_total", "otel_sdk_exporter_span_exported_total"} {
		f, ok := fams[name]
		if !ok {
			continue
		}
		found = true
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "error_type" {
					lost += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	if !found {
		return -1
	}
	return lost
}

// droppedRE matches the export processor's report of dropped spans.
var droppedRE = regexp.MustCompile(`(\d+) spans dropped`)

// droppedSpans sums the spans a server's log says it dropped (a lower
// bound: export errors are logged at most every 30 s).
func droppedSpans(logFile string) (int, error) {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, m := range droppedRE.FindAllSubmatch(b, -1) {
		n, err := strconv.Atoi(string(m[1]))
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// quantile is the q-quantile of v (bench.Percentile: linear interpolation).
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return bench.Percentile(slices.Sorted(slices.Values(v)), 100*q)
}

func median(v []float64) float64 { return quantile(v, 0.5) }

func formatAll(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, " ")
}
