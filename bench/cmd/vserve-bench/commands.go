package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vserve/vserve/bench"
)

func cmdRun(ctx context.Context, args []string) error {
	var c common
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	t, err := c.target(c.baseURL, c.name)
	if err != nil {
		return err
	}
	prompts, err := c.prompts()
	if err != nil {
		return err
	}
	client, err := c.client(t, c.concurrency)
	if err != nil {
		return err
	}
	if err := client.ResolveModel(ctx); err != nil {
		return err
	}
	s, results, err := runOne(ctx, &c, client, prompts, c.load(c.measuredCount(prompts)))
	if err != nil {
		return err
	}
	if err := bench.WriteTable(os.Stdout, s); err != nil {
		return err
	}
	return c.outputs([]bench.Summary{s}, []bench.Series{{Name: t.Name, Results: results}}, nil)
}

func cmdCompare(ctx context.Context, args []string) error {
	var c common
	var compareURL, compareName, compareModel string
	var rounds int
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	c.register(fs)
	fs.StringVar(&compareURL, "compare-url", "", "base URL of the second server")
	fs.StringVar(&compareName, "compare-name", "", "label of the second server")
	fs.StringVar(&compareModel, "compare-model", "", "model name on the second server (default: its first)")
	fs.IntVar(&rounds, "rounds", 4, "interleaved rounds (ABBA order)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	if compareURL == "" {
		return fmt.Errorf("compare needs --compare-url")
	}
	ta, err := c.target(c.baseURL, c.name)
	if err != nil {
		return err
	}
	tb, _ := c.target(compareURL, compareName)
	tb.Model = compareModel
	prompts, err := c.prompts()
	if err != nil {
		return err
	}
	ca, err := c.client(ta, c.concurrency)
	if err != nil {
		return err
	}
	cb, err := c.client(tb, c.concurrency)
	if err != nil {
		return err
	}
	for _, cl := range []*bench.Client{ca, cb} {
		if err := cl.ResolveModel(ctx); err != nil {
			return err
		}
	}
	sa, sb, ra, rb, err := compare(ctx, &c, ca, cb, prompts, rounds)
	if err != nil {
		return err
	}
	if err := bench.WriteTable(os.Stdout, sa, sb); err != nil {
		return err
	}
	return c.outputs([]bench.Summary{sa, sb}, []bench.Series{{Name: ta.Name, Results: ra}, {Name: tb.Name, Results: rb}}, nil)
}

// compare runs the prompts against two targets in interleaved rounds, the
// first --warmup of them as warm-up of both, and summarises each, reading
// the servers' counters after the warm-up and after the run when they
// expose /metrics.
func compare(ctx context.Context, c *common, ca, cb *bench.Client, prompts []bench.Prompt, rounds int) (sa, sb bench.Summary, ra, rb []bench.Result, err error) {
	cfg := c.load(2 * c.measuredCount(prompts))
	var beforeA, beforeB bench.ServerCounters
	var errA, errB error
	cfg.WarmedUp = func() {
		beforeA, errA = bench.ScrapeCounters(ctx, ca.HTTP, ca.Target.BaseURL)
		beforeB, errB = bench.ScrapeCounters(ctx, cb.HTTP, cb.Target.BaseURL)
	}
	ra, rb, da, db, err := bench.Compare(ctx, ca.Do, cb.Do, prompts, cfg, rounds)
	if err != nil {
		return sa, sb, nil, nil, err
	}
	sa = bench.Summarize(ca.Target.Name, ra, da, c.slo())
	sb = bench.Summarize(cb.Target.Name, rb, db, c.slo())
	c.setup(&sa, ca, c.measuredCount(prompts))
	c.setup(&sb, cb, c.measuredCount(prompts))
	addServerCounters(ctx, ca, &sa, beforeA, errA)
	addServerCounters(ctx, cb, &sb, beforeB, errB)
	return sa, sb, ra, rb, nil
}

func cmdSweep(ctx context.Context, args []string) error {
	var c common
	var levels string
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	c.register(fs)
	fs.StringVar(&levels, "concurrency", "1,4,16,64", "concurrency levels (each runs on its own --warmup + --num-prompts prompts)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	conc, err := parseInts(levels)
	if err != nil {
		return err
	}
	t, err := c.target(c.baseURL, c.name)
	if err != nil {
		return err
	}
	client, err := c.client(t, conc[len(conc)-1])
	if err != nil {
		return err
	}
	if err := client.ResolveModel(ctx); err != nil {
		return err
	}
	pts, err := sweep(ctx, &c, client, conc)
	if err != nil {
		return err
	}
	bench.WriteSweepMarkdown(os.Stdout, t.Name, pts)
	sums := make([]bench.Summary, len(pts))
	for i, p := range pts {
		sums[i] = p.Summary
	}
	return c.outputs(sums, nil, map[string][]bench.SweepPoint{t.Name: pts})
}

// sweep runs one level per concurrency, each on its own prompts (and
// warm-up prompts): see promptSets.
func sweep(ctx context.Context, c *common, client *bench.Client, levels []int) ([]bench.SweepPoint, error) {
	counts := make([]int, len(levels))
	for i, n := range levels {
		counts[i] = c.warmup + c.numPrompts
		if c.perLevel > 0 {
			// Rounds of requests per level, so low concurrency does not take
			// as long as high concurrency with the same prompt count.
			counts[i] = c.warmup + min(c.perLevel*n, c.numPrompts)
		}
	}
	sets, err := c.promptSets(counts)
	if err != nil {
		return nil, err
	}
	var pts []bench.SweepPoint
	for i, n := range levels {
		if ctx.Err() != nil {
			return pts, ctx.Err()
		}
		c.concurrency = n
		s, _, err := runOne(ctx, c, client, sets[i], c.load(c.measuredCount(sets[i])))
		if err != nil {
			return pts, err
		}
		fmt.Fprintf(os.Stderr, "concurrency %d: %.1f output tok/s, TTFT p50 %.1f ms, TPOT p50 %.1f ms, %d failed\n",
			n, s.OutputTokensPS, s.TTFT.Median, s.TPOT.Median, s.Failed)
		pts = append(pts, bench.SweepPoint{Concurrency: n, Summary: s})
	}
	return pts, nil
}

// outputs writes the JSON file and plots that the flags ask for.
func (c *common) outputs(sums []bench.Summary, series []bench.Series, sweeps map[string][]bench.SweepPoint) error {
	if c.jsonOut != "" {
		if err := bench.WriteJSON(c.jsonOut, sums); err != nil {
			return err
		}
	}
	if c.plotDir == "" {
		return nil
	}
	if err := os.MkdirAll(c.plotDir, 0o755); err != nil {
		return err
	}
	if len(series) > 0 {
		if err := bench.PlotLatencyCDF(filepath.Join(c.plotDir, "latency_cdf.png"), series...); err != nil {
			return err
		}
	}
	if len(sweeps) > 0 {
		if err := bench.PlotThroughput(filepath.Join(c.plotDir, "throughput.png"), sweeps); err != nil {
			return err
		}
	}
	return nil
}
