package runner_test

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/vserve/vserve/internal/sharedtest"
	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/scheduler"
)

// TestPromptLogprobsThroughScheduler runs prompt logprobs through the real
// scheduler and runner: a prompt already in the prefix cache, prefilled in
// chunks of 8 tokens next to a batch mate, with 2 logit rows per
// Model.Logits call. The request reads no prefix-cache hit, gets all its
// prompt entries once with its first output, and they equal those of an
// unchunked run alone.
func TestPromptLogprobsThroughScheduler(t *testing.T) {
	dirs := map[string]string{"llama-tiny": filepath.Join(t.TempDir(), "tiny")}
	if err := model.Generate(dirs["llama-tiny"], model.SpecTiny, 3); err != nil {
		t.Fatal(err)
	}
	if d := sharedtest.Dir("models", "stories260K", "hf"); d != "" {
		dirs["stories260K"] = d
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			prompt := []int32{1}
			for i := 0; len(prompt) < 29; i++ {
				prompt = append(prompt, int32(3+(i*37)%200))
			}
			withLP := greedy(3)
			withLP.PromptLogprobs = 2

			alone := newEngine(t, dir, scheduler.Config{MaxModelLen: 64, NumBlocks: 64, BlockSize: 4, EnablePrefixCaching: true})
			alone.add("lp", prompt, withLP)
			want := alone.runAll()["lp"][0].PromptLogprobs

			e := newEngine(t, dir, scheduler.Config{MaxModelLen: 64, NumBlocks: 64, BlockSize: 4, EnablePrefixCaching: true,
				MaxNumBatchedTokens: 8, MaxNumSeqs: 2})
			e.add("warm", prompt, greedy(1))
			e.runAll()
			e.add("lp", prompt, withLP)
			e.add("mate", prompt[:13], greedy(3))
			outs := e.runAll()
			lp := outs["lp"]
			if lp[0].NumCachedTokens != 0 {
				t.Fatalf("the prompt-logprobs request read %d cached tokens", lp[0].NumCachedTokens)
			}
			if outs["mate"][0].NumCachedTokens == 0 {
				t.Fatal("the batch mate should hit the prefix cache")
			}
			for i, o := range lp[1:] {
				if o.PromptLogprobs != nil {
					t.Fatalf("output %d carries prompt logprobs again", i+1)
				}
			}
			got := lp[0].PromptLogprobs
			if len(got) != len(prompt)-1 || len(want) != len(prompt)-1 {
				t.Fatalf("%d prompt entries chunked, %d alone, want %d", len(got), len(want), len(prompt)-1)
			}
			for i := range got {
				g, w := got[i], want[i]
				if g.TokenID != prompt[i+1] || w.TokenID != prompt[i+1] {
					t.Fatalf("entry %d: tokens %d and %d, want %d", i, g.TokenID, w.TokenID, prompt[i+1])
				}
				if math.Abs(float64(g.Logprob-w.Logprob)) > 1e-4 || g.Logprob > 0 || g.Rank < 1 || len(g.Top) != 2 {
					t.Fatalf("entry %d: chunked %+v, alone %+v", i, g, w)
				}
				if g.Top[0].Logprob < g.Top[1].Logprob || g.Top[0].Logprob < g.Logprob {
					t.Fatalf("entry %d: top entries out of order: %+v", i, g)
				}
			}
		})
	}
}
