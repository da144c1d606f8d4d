package runner

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/vserve/vserve/scheduler"
)

// refLogSoftmax is the float64 log-softmax of row.
func refLogSoftmax(row []float64) []float64 {
	mx := math.Inf(-1)
	for _, x := range row {
		mx = math.Max(mx, x)
	}
	sum := 0.0
	for _, x := range row {
		sum += math.Exp(x - mx)
	}
	lse := mx + math.Log(sum)
	out := make([]float64, len(row))
	for i, x := range row {
		out[i] = x - lse
	}
	return out
}

// TestPromptLogprobsMatchReference prefills a request that asks for prompt
// logprobs in chunks of 5 next to a batch mate, with a workspace of 2 logit
// rows (so the prompt rows are computed in several Model.Logits calls), and
// checks every prompt position against the float64 reference: the prompt
// token's logprob and rank and the top 3.
func TestPromptLogprobsMatchReference(t *testing.T) {
	for name, dir := range testModels(t) {
		t.Run(name, func(t *testing.T) {
			be := greedyBackend{newCPU(t)}
			m := loadModel(t, dir, be)
			ref := loadRef(t, dir)
			r := newRunner(t, m, be, Config{MaxNumSeqs: 2})
			h := newHarness(t, r)
			rng := rand.New(rand.NewPCG(5, 6))
			const k = 3
			p := greedy(2)
			p.PromptLogprobs = k
			prompt := randomPrompt(rng, 19, m.Config.VocabSize)
			h.add("lp", prompt, p)
			h.add("mate", randomPrompt(rng, 9, m.Config.VocabSize), greedy(2))
			got := make([]*scheduler.TokenLogprobs, len(prompt))
			for step := 0; step < 20; step++ {
				plan := map[string]int{}
				for _, id := range []string{"lp", "mate"} {
					s := h.seqs[id]
					if len(s.out) < 2 {
						plan[id] = min(5, len(s.prompt)+len(s.out)-s.computed)
					}
				}
				if len(plan) == 0 {
					break
				}
				ro := h.run([]string{"lp", "mate"}, plan)
				for _, c := range ro.PromptLogprobs {
					if c.ReqID != "lp" {
						t.Fatalf("prompt logprobs for %q, which did not ask", c.ReqID)
					}
					for i := range c.Logprobs {
						pos := c.Start + i
						if got[pos] != nil {
							t.Fatalf("prompt token %d reported twice", pos)
						}
						got[pos] = &c.Logprobs[i]
					}
				}
			}
			if got[0] != nil {
				t.Fatal("the first prompt token has a logprob")
			}
			logits := ref.logits(prompt)
			for pos := 1; pos < len(prompt); pos++ {
				lp := got[pos]
				if lp == nil {
					t.Fatalf("prompt token %d has no logprob", pos)
				}
				checkPromptLogprob(t, pos, lp, logits[pos-1], prompt[pos], k)
			}
		})
	}
}

func checkPromptLogprob(t *testing.T, pos int, lp *scheduler.TokenLogprobs, logits []float64, token int32, k int) {
	t.Helper()
	want := refLogSoftmax(logits)
	scale := 0.0
	for _, x := range logits {
		scale = math.Max(scale, math.Abs(x))
	}
	tol := 5e-4*scale + 1e-5
	if lp.TokenID != token {
		t.Fatalf("position %d: token %d, want the prompt token %d", pos, lp.TokenID, token)
	}
	if d := math.Abs(float64(lp.Logprob) - want[token]); d > tol {
		t.Fatalf("position %d: logprob %.6f, reference %.6f", pos, lp.Logprob, want[token])
	}
	lo, hi := 0, 0 // the rank within the tolerance of ties
	for _, v := range want {
		if v >= want[token]-tol {
			hi++
		}
		if v > want[token]+tol {
			lo++
		}
	}
	if lp.Rank < lo+1 || lp.Rank > hi {
		t.Fatalf("position %d: rank %d, reference between %d and %d", pos, lp.Rank, lo+1, hi)
	}
	if len(lp.Top) != k {
		t.Fatalf("position %d: %d top entries, want %d", pos, len(lp.Top), k)
	}
	sorted := slices.Clone(want)
	slices.SortFunc(sorted, func(a, b float64) int { return -cmpFloat(a, b) })
	for j, e := range lp.Top {
		if d := math.Abs(float64(e.Logprob) - want[e.TokenID]); d > tol {
			t.Fatalf("position %d top %d: token %d logprob %.6f, reference %.6f", pos, j, e.TokenID, e.Logprob, want[e.TokenID])
		}
		if want[e.TokenID] < sorted[j]-2*tol {
			t.Fatalf("position %d top %d: token %d (reference %.6f) is not the %d-th best (%.6f)", pos, j, e.TokenID, want[e.TokenID], j+1, sorted[j])
		}
	}
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestPromptLogprobsKeepSampling checks that asking for prompt logprobs does
// not change the sampled tokens, that a one-token prefill chunk at the end
// of the prompt reports nothing, and that a request resumed after its first
// output does not compute them again.
func TestPromptLogprobsKeepSampling(t *testing.T) {
	dirs := testModels(t)
	be := greedyBackend{newCPU(t)}
	m := loadModel(t, dirs["llama-tiny-f32"], be)
	rng := rand.New(rand.NewPCG(7, 8))
	prompt := randomPrompt(rng, 12, m.Config.VocabSize)
	outputs := func(promptLogprobs int) ([]int32, int) {
		r := newRunner(t, m, be, Config{})
		h := newHarness(t, r)
		p := greedy(6)
		p.PromptLogprobs = promptLogprobs
		h.add("a", prompt, p)
		n := 0
		count := func(ro *scheduler.RunnerOutput) {
			for _, c := range ro.PromptLogprobs {
				n += len(c.Logprobs)
			}
		}
		count(h.run([]string{"a"}, map[string]int{"a": 11}))
		count(h.run([]string{"a"}, map[string]int{"a": 1})) // the last prompt position: samples, no prompt logprob
		count(h.run([]string{"a"}, map[string]int{"a": 1}))
		h.preempt("a")
		s := h.seqs["a"]
		count(h.run([]string{"a"}, map[string]int{"a": len(s.prompt) + len(s.out)}))
		h.generate([]string{"a"}, 4, 6)
		return h.seqs["a"].out, n
	}
	plain, n0 := outputs(-1)
	withLP, n1 := outputs(2)
	if !slices.Equal(plain, withLP) {
		t.Fatalf("outputs with prompt logprobs %v, without %v", withLP, plain)
	}
	if n0 != 0 || n1 != len(prompt)-1 {
		t.Fatalf("prompt logprob entries: %d without, %d with (want 0 and %d)", n0, n1, len(prompt)-1)
	}
}

func TestTopK(t *testing.T) {
	row := []float32{1, 5, 3, 5, -2, 4}
	for _, c := range []struct {
		k    int
		want []int32
	}{
		{1, []int32{1}},
		{2, []int32{1, 3}},
		{4, []int32{1, 3, 5, 2}},
		{6, []int32{1, 3, 5, 2, 0, 4}},
	} {
		if got := topK(row, c.k); !slices.Equal(got, c.want) {
			t.Errorf("topK(%d) = %v, want %v", c.k, got, c.want)
		}
	}
	lp := rowLogprobs(row, 3, 2)
	if lp.Rank != 2 || lp.TokenID != 3 || len(lp.Top) != 2 {
		t.Fatalf("rowLogprobs: %+v (ties count toward the rank, as in vLLM)", lp)
	}
	sum := 0.0
	for _, x := range row {
		sum += math.Exp(float64(x))
	}
	if want := 5 - math.Log(sum); math.Abs(float64(lp.Logprob)-want) > 1e-6 {
		t.Fatalf("logprob %v, want %v", lp.Logprob, want)
	}
}
