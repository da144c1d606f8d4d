package runner_test

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/internal/sharedtest"
	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/kernel/cpu"
	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/runtime/runner"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/tokenizer"
)

// engine wires the real scheduler, the runner and the CPU backend (with
// the real sampler) the way the engine loop does.
type engine struct {
	t     testing.TB
	sched *scheduler.Scheduler
	run   *runner.Runner
	model *model.Model
	stats scheduler.Stats
}

func newEngine(t testing.TB, dir string, sc scheduler.Config) *engine {
	t.Helper()
	be, err := cpu.New(kernel.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	m, err := model.Load(dir, be, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	s, err := scheduler.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	sc = s.Config()
	r, err := runner.New(m, be, runner.Config{BlockSize: sc.BlockSize, NumBlocks: sc.NumBlocks, MaxNumSeqs: sc.MaxNumSeqs,
		MaxNumBatchedTokens: sc.MaxNumBatchedTokens, MaxModelLen: sc.MaxModelLen, Seed: 99})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &engine{t: t, sched: s, run: r, model: m}
}

func (e *engine) add(id string, prompt []int32, p scheduler.SamplingParams) {
	e.t.Helper()
	if err := e.sched.AddRequest(&scheduler.Request{ID: id, PromptTokenIDs: prompt, Params: p,
		EOSTokenIDs: e.model.Config.EOSTokenIDs}); err != nil {
		e.t.Fatal(err)
	}
}

// runAll steps until every request finished and returns the outputs.
func (e *engine) runAll() map[string][]scheduler.RequestOutput {
	e.t.Helper()
	outs := map[string][]scheduler.RequestOutput{}
	for steps := 0; e.sched.HasUnfinished(); steps++ {
		if steps > 5000 {
			e.t.Fatal("no progress")
		}
		out := e.sched.Schedule()
		ro, err := e.run.Execute(out)
		if err != nil {
			e.t.Fatal(err)
		}
		var deltas []scheduler.RequestOutput
		deltas, e.stats = e.sched.Update(out, ro)
		for _, d := range deltas {
			outs[d.ID] = append(outs[d.ID], d)
		}
	}
	if _, err := e.run.Execute(e.sched.Schedule()); err != nil { // drops finished requests
		e.t.Fatal(err)
	}
	if n := e.run.NumRequests(); n != 0 {
		e.t.Fatalf("runner still holds %d requests", n)
	}
	return outs
}

func tokens(ds []scheduler.RequestOutput) []int32 {
	var ids []int32
	for _, d := range ds {
		ids = append(ids, d.NewTokenIDs...)
	}
	return ids
}

func greedy(n int) scheduler.SamplingParams {
	p := scheduler.DefaultSamplingParams(n)
	p.Temperature = 0
	return p
}

// TestStories260KEndToEnd runs the real model through the real tokenizer,
// scheduler, runner, CPU kernels and sampler.
func TestStories260KEndToEnd(t *testing.T) {
	dir := sharedtest.Path(t, "models", "stories260K", "hf")
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	prompt := tok.Encode("Once upon a time", true)
	if prompt[0] != 1 {
		t.Fatalf("prompt %v does not start with BOS", prompt)
	}
	e := newEngine(t, dir, scheduler.Config{MaxModelLen: 256, BlockSize: 16, NumBlocks: 64, EnablePrefixCaching: true})
	e.add("greedy", prompt, greedy(40))
	outs := e.runAll()
	text := tok.Decode(tokens(outs["greedy"]), true)
	want := ", there was a little girl named Lily. She loved to play outside in the park."
	if !strings.HasPrefix(text, want) {
		t.Fatalf("continuation %q, want prefix %q", text, want)
	}
	t.Logf("Once upon a time%s", text)
}

// TestSchedulerBatchInvariance runs many requests through the real
// scheduler with a small token budget (chunked prefill), few KV blocks
// (preemption and recomputation) and shared prefixes (prefix-cache hits)
// and checks every request's greedy tokens against a run alone.
func TestSchedulerBatchInvariance(t *testing.T) {
	dirs := map[string]string{}
	gen := filepath.Join(t.TempDir(), "gqa")
	if err := model.Generate(gen, model.Spec{Name: "gqa", Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2,
		Vocab: 320, MaxPos: 256, Tied: true}, 11); err != nil {
		t.Fatal(err)
	}
	dirs["generated"] = gen
	if d := sharedtest.Dir("models", "stories260K", "hf"); d != "" {
		dirs["stories260K"] = d
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			cfg := scheduler.Config{MaxModelLen: 96, BlockSize: 4, NumBlocks: 40, MaxNumBatchedTokens: 24, MaxNumSeqs: 6,
				EnablePrefixCaching: true}
			shared := []int32{1, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310}
			prompts := map[string][]int32{}
			for i := 0; i < 8; i++ {
				p := []int32{1}
				if i%2 == 0 {
					p = slices.Clone(shared)
				}
				for j := 0; j < 3+5*i; j++ {
					p = append(p, int32(3+(i*37+j*11)%250))
				}
				prompts[fmt.Sprintf("r%d", i)] = p
			}
			const maxTokens = 24
			alone := map[string][]int32{}
			for id, p := range prompts {
				e := newEngine(t, dir, cfg)
				e.add(id, p, greedy(maxTokens))
				alone[id] = tokens(e.runAll()[id])
			}
			e := newEngine(t, dir, cfg)
			for i := 0; i < 8; i++ {
				id := fmt.Sprintf("r%d", i)
				e.add(id, prompts[id], greedy(maxTokens))
			}
			outs := e.runAll()
			for id := range prompts {
				if got := tokens(outs[id]); !slices.Equal(got, alone[id]) {
					t.Errorf("%s: batched %v\n alone %v", id, got, alone[id])
				}
			}
			if e.stats.NumPreemptions == 0 || e.stats.PrefixCacheHits == 0 {
				t.Errorf("scenario did not exercise preemption (%d) and prefix hits (%d)", e.stats.NumPreemptions, e.stats.PrefixCacheHits)
			}
			t.Logf("preemptions %d, prefix-cache hit tokens %d", e.stats.NumPreemptions, e.stats.PrefixCacheHits)
		})
	}
}

// TestSameStepSiblingsShareBlocks: identical prompts admitted in one step
// (n > 1 siblings) hit the blocks the first of them computes in that same
// step, as in vLLM, and still generate what each generates alone: the
// forward pass writes the step's K/V before attention reads it.
func TestSameStepSiblingsShareBlocks(t *testing.T) {
	dir := sharedtest.Path(t, "models", "stories260K", "hf")
	cfg := scheduler.Config{MaxModelLen: 128, BlockSize: 16, NumBlocks: 32, EnablePrefixCaching: true}
	prompt := []int32{1}
	for i := 0; i < 40; i++ {
		prompt = append(prompt, int32(300+3*i))
	}
	alone := newEngine(t, dir, cfg)
	alone.add("alone", prompt, greedy(12))
	want := tokens(alone.runAll()["alone"])

	e := newEngine(t, dir, cfg)
	for i := 0; i < 4; i++ {
		e.add(fmt.Sprintf("s%d", i), prompt, greedy(12))
	}
	first := e.sched.Schedule()
	require.Len(t, first.NewRequests, 4, "all four siblings are admitted in the first step")
	for i, nr := range first.NewRequests {
		wantHit := 32 // two full blocks; the last prompt token is always computed
		if i == 0 {
			wantHit = 0
		}
		assert.Equal(t, wantHit, nr.NumComputedTokens, nr.ID)
		assert.Equal(t, len(prompt)-wantHit, first.NumScheduledTokens[nr.ID], nr.ID)
	}
	assert.Equal(t, 3+3*1, 32-1-e.sched.Stats().KVBlocksFree, "the first sibling holds 3 blocks, each other 1 of its own")
	ro, err := e.run.Execute(first)
	require.NoError(t, err)
	e.sched.Update(first, ro)
	outs := e.runAll()
	for i := 0; i < 4; i++ {
		id := fmt.Sprintf("s%d", i)
		got := append([]int32{ro.SampledTokenIDs[slices.Index(ro.ReqIDs, id)][0]}, tokens(outs[id])...)
		assert.Equal(t, want, got, id)
	}
}

// TestSamplingThroughRunner checks what the runner adds to the sampler:
// per-request seeds that do not depend on the batch, min_tokens masking of
// EOS, logit_bias, and logprobs in the output.
func TestSamplingThroughRunner(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if err := model.Generate(dir, model.SpecTiny, 5); err != nil {
		t.Fatal(err)
	}
	cfg := scheduler.Config{MaxModelLen: 128, BlockSize: 8, NumBlocks: 64}
	seeded := scheduler.DefaultSamplingParams(16)
	seeded.Temperature, seeded.Seed, seeded.HasSeed = 0.9, 1234, true
	prompt := []int32{1, 50, 60, 70}

	e := newEngine(t, dir, cfg)
	e.add("s", prompt, seeded)
	alone := tokens(e.runAll()["s"])

	e = newEngine(t, dir, cfg)
	e.add("x", []int32{1, 9, 9, 9, 9, 9}, scheduler.DefaultSamplingParams(16))
	e.add("s", prompt, seeded)
	lp := greedy(3)
	lp.Logprobs = 2
	e.add("lp", prompt, lp)
	eos := e.model.Config.EOSTokenIDs[0]
	mt := greedy(10)
	mt.MinTokens = 5
	mt.LogitBias = map[int32]float32{eos: 100}
	e.add("min", prompt, mt)
	outs := e.runAll()
	if got := tokens(outs["s"]); !slices.Equal(got, alone) {
		t.Errorf("seeded request: batched %v, alone %v", got, alone)
	}
	if got := tokens(outs["min"]); len(got) != 6 || slices.Contains(got[:5], eos) || got[5] != eos {
		t.Errorf("min_tokens 5 with EOS favoured: got %v (EOS %d)", got, eos)
	}
	var lps []scheduler.TokenLogprobs
	for _, d := range outs["lp"] {
		lps = append(lps, d.Logprobs...)
	}
	if len(lps) != 3 {
		t.Fatalf("logprobs for %d tokens, want 3", len(lps))
	}
	for i, l := range lps {
		if l.Rank != 1 || len(l.Top) != 2 || l.Top[0].TokenID != l.TokenID || l.Logprob > 0 ||
			math.Abs(float64(l.Top[0].Logprob-l.Logprob)) > 1e-6 || l.Top[1].Logprob > l.Top[0].Logprob {
			t.Errorf("token %d logprobs %+v", i, l)
		}
	}
}
