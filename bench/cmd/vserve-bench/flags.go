package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/vserve/vserve/bench"
	"github.com/vserve/vserve/tokenizer"
)

// common holds the flags shared by run, compare and sweep.
type common struct {
	baseURL, model, apiKey, api, name string
	dataset, tokenizerDir, sharegpt   string
	numPrompts                        int
	inLen, outLen                     int
	rangeRatio                        float64
	groups, prefixLen, suffixLen      int
	concurrency                       int
	rate, burstiness                  float64
	duration                          time.Duration
	warmup                            int
	seed                              uint64
	sloTTFT, sloTPOT                  float64
	jsonOut, plotDir                  string
	noProgress                        bool
	perLevel                          int
	requestTimeout                    time.Duration
	flags                             *flag.FlagSet   // the parsed flags, to tell which were given
	tok                               bench.Tokenizer // loaded from tokenizerDir by tokenizer()
	ignoreEOS                         bool
	temperature                       optFloat
}

// optFloat is a float flag that may be left unset.
type optFloat struct{ v *float64 }

func (o *optFloat) String() string {
	if o == nil || o.v == nil {
		return ""
	}
	return strconv.FormatFloat(*o.v, 'g', -1, 64)
}

func (o *optFloat) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	o.v = &f
	return nil
}

func (c *common) register(fs *flag.FlagSet) {
	c.flags = fs
	fs.StringVar(&c.baseURL, "base-url", "http://127.0.0.1:8000", "server base URL")
	fs.StringVar(&c.model, "model", "", "model name (default: the first of /v1/models)")
	fs.StringVar(&c.apiKey, "api-key", os.Getenv("OPENAI_API_KEY"), "API key")
	fs.StringVar(&c.api, "endpoint-type", "completions", "completions or chat")
	fs.StringVar(&c.name, "name", "", "label of the target (default: base URL)")
	fs.StringVar(&c.dataset, "dataset", "random", "random, sharegpt or shared-prefix")
	fs.StringVar(&c.tokenizerDir, "tokenizer", "", "directory with the target model's tokenizer.json (needed by random and shared-prefix; counts output tokens when a server sends no usage, which are otherwise counted as chunks)")
	fs.StringVar(&c.sharegpt, "sharegpt-path", "", "ShareGPT JSON file (dataset sharegpt)")
	fs.IntVar(&c.numPrompts, "num-prompts", 100, "requests to send")
	fs.IntVar(&c.inLen, "random-input-len", 128, "input tokens per request (random)")
	fs.IntVar(&c.outLen, "random-output-len", 128, "output tokens per request (random, shared-prefix; sharegpt: when given and > 0, or without --tokenizer, replaces the reference answer's length)")
	fs.Float64Var(&c.rangeRatio, "random-range-ratio", 0, "random: lengths drawn uniformly from the integers in [floor(len*(1-r)), ceil(len*(1+r))], r in [0, 1)")
	fs.IntVar(&c.groups, "prefix-groups", 4, "shared-prefix: distinct system prompts")
	fs.IntVar(&c.prefixLen, "prefix-len", 512, "shared-prefix: tokens of each system prompt")
	fs.IntVar(&c.suffixLen, "suffix-len", 32, "shared-prefix: tokens of each question")
	fs.IntVar(&c.concurrency, "max-concurrency", 0, "requests in flight at most (0: no cap, as in vllm bench serve)")
	fs.Float64Var(&c.rate, "request-rate", math.Inf(1), "mean request arrival rate per second (inf: all at once)")
	fs.Float64Var(&c.burstiness, "burstiness", 1, "gamma shape of inter-arrival times, > 0 (1: Poisson; inf: a constant 1/rate gap)")
	fs.DurationVar(&c.duration, "duration", 0, "stop issuing requests after this long (0: send all prompts)")
	fs.IntVar(&c.warmup, "warmup", 2, "unmeasured requests sent first")
	fs.Uint64Var(&c.seed, "seed", 0, "seed of datasets and arrivals")
	fs.Float64Var(&c.sloTTFT, "goodput-ttft-ms", 0, "goodput SLO on TTFT in ms (0: none)")
	fs.Float64Var(&c.sloTPOT, "goodput-tpot-ms", 0, "goodput SLO on TPOT in ms (0: none)")
	fs.StringVar(&c.jsonOut, "json", "", "write the results as JSON to this file ('-': stdout): a list with one object per run (target, or sweep level) holding vllm bench serve's result keys, per-request arrays included")
	fs.StringVar(&c.plotDir, "plot-dir", "", "write PNG plots to this directory")
	fs.BoolVar(&c.noProgress, "no-progress", false, "no progress bar")
	fs.BoolVar(&c.ignoreEOS, "ignore-eos", false, "send ignore_eos, so that every request generates its max tokens (the random dataset always does, as in vllm bench serve)")
	fs.Var(&c.temperature, "temperature", "sampling temperature to send (default: none, the server's default applies, as in vllm bench serve)")
	fs.DurationVar(&c.requestTimeout, "request-timeout", bench.DefaultRequestTimeout, "time a request may take from start to end of its stream; past it, it fails as a timeout (0: no limit)")
	fs.IntVar(&c.perLevel, "rounds-per-level", 0, "sweep and report: requests per unit of concurrency at each level (0: all --num-prompts)")
}

func (c *common) slo() bench.SLO {
	return bench.SLO{TTFT: time.Duration(c.sloTTFT * float64(time.Millisecond)), TPOT: time.Duration(c.sloTPOT * float64(time.Millisecond))}
}

func (c *common) target(baseURL, name string) (bench.Target, error) {
	api := bench.API(c.api)
	if api != bench.Completions && api != bench.Chat {
		return bench.Target{}, fmt.Errorf("--endpoint-type must be completions or chat, not %q", c.api)
	}
	if name == "" {
		name = baseURL
	}
	return bench.Target{Name: name, BaseURL: baseURL, Model: c.model, APIKey: c.apiKey, API: api}, nil
}

// tokenizer returns the tokenizer of --tokenizer (nil without one),
// loading it once.
func (c *common) tokenizer() (bench.Tokenizer, error) {
	if c.tok == nil && c.tokenizerDir != "" {
		t, err := tokenizer.LoadDir(c.tokenizerDir)
		if err != nil {
			return nil, err
		}
		c.tok = t
	}
	return c.tok, nil
}

// client returns a client of target t as the flags configure it.
func (c *common) client(t bench.Target, maxConns int) (*bench.Client, error) {
	tok, err := c.tokenizer()
	if err != nil {
		return nil, err
	}
	if maxConns <= 0 { // no cap: up to every request at once
		maxConns = c.numPrompts
	}
	cl := bench.NewClient(t, maxConns)
	cl.Timeout = c.requestTimeout
	cl.Tokenizer = tok
	// As vllm bench serve does, the random dataset always ignores EOS, so
	// that generation runs to the drawn output length.
	cl.IgnoreEOS = c.ignoreEOS || c.dataset == "random"
	cl.Temperature = c.temperature.v
	return cl, nil
}

// prompts returns the prompts of one run: --warmup warm-up prompts, then
// --num-prompts measured ones.
func (c *common) prompts() ([]bench.Prompt, error) {
	sets, err := c.promptSets([]int{c.numPrompts + c.warmup})
	if err != nil {
		return nil, err
	}
	return sets[0], nil
}

// promptSets returns one set of prompts per count, each of that many
// prompts and sharing none with another set, so that a run on one set
// (a sweep level, with its warm-up) finds nothing of another in the
// server's prefix cache: vLLM's sweeps reset the prefix cache between
// runs, and vserve has no endpoint for that. The random and ShareGPT sets
// are disjoint slices of one draw; the shared-prefix sets are drawn with
// seeds --seed, --seed+1, ..., so each has its own system prompts.
func (c *common) promptSets(counts []int) ([][]bench.Prompt, error) {
	tok, err := c.tokenizer()
	if err != nil {
		return nil, err
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	var all []bench.Prompt
	switch c.dataset {
	case "random":
		all, err = bench.RandomPrompts(tok, total, bench.LenRange{Mean: c.inLen, Ratio: c.rangeRatio},
			bench.LenRange{Mean: c.outLen, Ratio: c.rangeRatio}, c.seed)
	case "sharegpt":
		if c.sharegpt == "" {
			return nil, fmt.Errorf("--dataset sharegpt needs --sharegpt-path")
		}
		all, err = bench.LoadShareGPT(c.sharegpt, tok, bench.ShareGPTOptions{N: total, OutputLen: c.shareGPTOutputLen(tok != nil), Seed: c.seed})
		if err == nil && len(all) < total {
			err = fmt.Errorf("%s has %d usable conversations; %d are needed (%v: a set of its own per run)", c.sharegpt, len(all), total, counts)
		}
	case "shared-prefix":
		sets := make([][]bench.Prompt, len(counts))
		for i, n := range counts {
			per := (n + c.groups - 1) / max(c.groups, 1)
			ps, err := bench.SharedPrefixPrompts(tok, c.groups, per, c.prefixLen, c.suffixLen, c.outLen, c.seed+uint64(i))
			if err != nil {
				return nil, err
			}
			// Whole groups round up; the prompts are interleaved by group,
			// so cutting the end keeps the groups within one prompt of
			// each other.
			sets[i] = ps[:min(n, len(ps))]
		}
		return sets, nil
	default:
		return nil, fmt.Errorf("--dataset must be random, sharegpt or shared-prefix, not %q", c.dataset)
	}
	if err != nil {
		return nil, err
	}
	sets := make([][]bench.Prompt, len(counts))
	for i, n := range counts {
		sets[i], all = all[:n:n], all[n:]
	}
	return sets, nil
}

// validate refuses the flag values vllm bench serve refuses.
func (c *common) validate() error {
	if !(c.burstiness > 0) {
		return fmt.Errorf("--burstiness %v: want a positive gamma shape (1: Poisson; inf: constant gaps)", c.burstiness)
	}
	if !(c.rate > 0) {
		return fmt.Errorf("--request-rate %v: want a positive rate (inf: all at once)", c.rate)
	}
	return nil
}

// shareGPTOutputLen is the fixed output length of ShareGPT prompts: that of
// --random-output-len when it is given (and > 0) or when there is no
// tokenizer to measure the reference answers with; else 0, each answer's
// length.
func (c *common) shareGPTOutputLen(haveTokenizer bool) int {
	given := false
	c.flags.Visit(func(f *flag.Flag) { given = given || f.Name == "random-output-len" })
	if (given && c.outLen > 0) || !haveTokenizer {
		return c.outLen
	}
	return 0
}

func (c *common) load(total int) bench.LoadConfig {
	cfg := bench.LoadConfig{Concurrency: c.concurrency, RequestRate: c.rate, Burstiness: c.burstiness,
		Duration: c.duration, Warmup: c.warmup, Seed: c.seed}
	if !c.noProgress {
		bar := progressbar.NewOptions(total, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription("requests"),
			progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
		cfg.Progress = func(done, _ int) { _ = bar.Set(done) }
	}
	return cfg
}

// measured drops the warm-up prompts' share from the prompt list's count.
func (c *common) measuredCount(prompts []bench.Prompt) int {
	return max(len(prompts)-c.warmup, 0)
}

// runOne runs the prompts against one target, the first --warmup of them
// as warm-up, and summarises, reading the server's counters after the
// warm-up and after the run when it exposes /metrics.
func runOne(ctx context.Context, c *common, client *bench.Client, prompts []bench.Prompt, cfg bench.LoadConfig) (bench.Summary, []bench.Result, error) {
	var before bench.ServerCounters
	var errBefore error
	cfg.Warmup = c.warmup
	cfg.WarmedUp = func() { before, errBefore = bench.ScrapeCounters(ctx, client.HTTP, client.Target.BaseURL) }
	results, d, err := bench.Run(ctx, client.Do, prompts, cfg)
	if err != nil {
		return bench.Summary{}, nil, err
	}
	s := bench.Summarize(client.Target.Name, results, d, c.slo())
	c.setup(&s, client, c.measuredCount(prompts))
	addServerCounters(ctx, client, &s, before, errBefore)
	return s, results, nil
}

// setup records in s how the run was made, as vllm bench serve records it.
func (c *common) setup(s *bench.Summary, client *bench.Client, numPrompts int) {
	s.ModelID = client.Target.Model
	s.Backend = "openai"
	if client.Target.API == bench.Chat {
		s.Backend = "openai-chat"
	}
	s.NumPrompts = numPrompts
	s.OfferedRate = bench.RateValue(c.rate)
	s.Burstiness = c.burstiness
	s.MaxConcurrency = nil
	if c.concurrency > 0 {
		s.MaxConcurrency = new(c.concurrency)
	}
}

// addServerCounters fills s's server-side figures from the difference of
// the target's /metrics counters since before, when both reads worked.
func addServerCounters(ctx context.Context, client *bench.Client, s *bench.Summary, before bench.ServerCounters, errBefore error) {
	after, err := bench.ScrapeCounters(ctx, client.HTTP, client.Target.BaseURL)
	if err != nil || errBefore != nil {
		return
	}
	diff := after.Sub(before)
	s.ServerMetricsOK = true
	s.PrefixHitRate = diff.HitRate()
	s.Preemptions = diff.Preemptions
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad concurrency list %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}
