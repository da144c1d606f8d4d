package runner

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vserve/vserve/internal/sharedtest"
	"github.com/vserve/vserve/runtime/model"
)

// testModels are generated random models covering the config variants,
// plus the real stories260K model when ../shared is present.
func testModels(t *testing.T) map[string]string {
	t.Helper()
	specs := map[string]model.Spec{
		"llama-tiny-f32": model.SpecTiny,
		"qwen2-gqa-bias": {Name: "qwen2", Architecture: model.ArchQwen2, Hidden: 48, Intermediate: 96, Layers: 2,
			Heads: 6, KVHeads: 2, Vocab: 300, MaxPos: 128, Tied: false},
		"llama3-rope-bf16-sharded": {Name: "l3", Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 1,
			HeadDim: 32, Vocab: 400, MaxPos: 512, DType: "bf16", Shards: 3, RopeTheta: 500000,
			RopeScaling: &model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64}},
		"mistral-f16": {Name: "mistral", Architecture: model.ArchMistral, Hidden: 32, Intermediate: 80, Layers: 3,
			Heads: 4, KVHeads: 2, Vocab: 280, MaxPos: 128, DType: "f16", Tied: true},
	}
	dirs := map[string]string{}
	for name, s := range specs {
		dir := filepath.Join(t.TempDir(), name)
		if err := model.Generate(dir, s, 7); err != nil {
			t.Fatal(err)
		}
		dirs[name] = dir
	}
	if d := sharedtest.Dir("models", "stories260K", "hf"); d != "" {
		dirs["stories260K"] = d
	}
	return dirs
}

func randomPrompt(r *rand.Rand, n, vocab int) []int32 {
	p := []int32{1}
	for len(p) < n {
		p = append(p, int32(3+r.IntN(vocab-3)))
	}
	return p
}

// TestLogitsMatchReference checks the runner's logits against the float64
// reference for several prompts batched together, prefilled in chunks of 3,
// then for greedy decode steps.
func TestLogitsMatchReference(t *testing.T) {
	for name, dir := range testModels(t) {
		t.Run(name, func(t *testing.T) {
			be := greedyBackend{newCPU(t)}
			m := loadModel(t, dir, be)
			ref := loadRef(t, dir)
			r := newRunner(t, m, be, Config{})
			r.captureLogits = true
			h := newHarness(t, r)
			rng := rand.New(rand.NewPCG(3, 4))
			ids := []string{"a", "b", "c"}
			for i, id := range ids {
				h.add(id, randomPrompt(rng, 3+7*i, m.Config.VocabSize), greedy(4))
			}
			checked := 0
			for step := 0; step < 40 && checked < 15; step++ {
				plan := map[string]int{}
				for _, id := range ids {
					s := h.seqs[id]
					if len(s.out) < 4 {
						plan[id] = min(3, len(s.prompt)+len(s.out)-s.computed)
					}
				}
				if len(plan) == 0 {
					break
				}
				// Snapshot the token lists the logits belong to.
				before := map[string][]int32{}
				for _, id := range ids {
					before[id] = h.seqs[id].tokens()
				}
				ro := h.run(ids, plan)
				V := m.Config.VocabSize
				for i, id := range ro.ReqIDs {
					want := ref.logits(before[id])
					got := r.lastLogits[i*V : (i+1)*V]
					if e := normErr(got, want[len(want)-1]); e > 2e-4 {
						t.Fatalf("step %d request %s (%d tokens): normalised logits error %.3g", h.step, id, len(before[id]), e)
					}
					checked++
				}
			}
			if checked < 12 {
				t.Fatalf("only %d logit rows checked", checked)
			}
		})
	}
}

// TestBatchInvariance checks that a request's greedy tokens do not depend
// on its batch mates, on chunking, on preemption with recomputation, or on
// its prefix coming from the prefix cache.
func TestBatchInvariance(t *testing.T) {
	const maxTokens = 10
	for name, dir := range testModels(t) {
		t.Run(name, func(t *testing.T) {
			be := greedyBackend{newCPU(t)}
			m := loadModel(t, dir, be)
			rng := rand.New(rand.NewPCG(5, 6))
			V := m.Config.VocabSize
			prompts := map[string][]int32{
				"a": randomPrompt(rng, 5, V), "b": randomPrompt(rng, 13, V), "c": randomPrompt(rng, 22, V),
			}
			// "p" shares a's... its first 12 tokens with "c".
			prompts["p"] = append(slices.Clone(prompts["c"][:12]), randomPrompt(rng, 7, V)[1:]...)
			ids := []string{"a", "b", "c", "p"}
			cfg := Config{BlockSize: 4, NumBlocks: 64}
			alone := map[string][]int32{}
			for _, id := range ids {
				h := newHarness(t, newRunner(t, m, be, cfg))
				h.add(id, prompts[id], greedy(maxTokens))
				h.generate([]string{id}, 1000, maxTokens)
				alone[id] = h.seqs[id].out
			}
			check := func(how string, h *harness, which ...string) {
				t.Helper()
				for _, id := range which {
					if got := h.seqs[id].out; !slices.Equal(got, alone[id]) {
						t.Errorf("%s: request %s tokens %v, alone %v", how, id, got, alone[id])
					}
				}
			}
			t.Run("together", func(t *testing.T) {
				h := newHarness(t, newRunner(t, m, be, cfg))
				for _, id := range ids {
					h.add(id, prompts[id], greedy(maxTokens))
				}
				h.generate(ids, 1000, maxTokens)
				check("together", h, ids...)
			})
			t.Run("chunked", func(t *testing.T) {
				for _, chunk := range []int{1, 3, 7} {
					h := newHarness(t, newRunner(t, m, be, cfg))
					for _, id := range ids {
						h.add(id, prompts[id], greedy(maxTokens))
					}
					h.generate(ids, chunk, maxTokens)
					check("chunk "+strconv.Itoa(chunk), h, ids...)
				}
			})
			t.Run("preempted", func(t *testing.T) {
				h := newHarness(t, newRunner(t, m, be, cfg))
				for _, id := range ids[:3] {
					h.add(id, prompts[id], greedy(maxTokens))
				}
				h.generate(ids[:3], 1000, 4) // 4 outputs each
				h.preempt("b")
				h.generate([]string{"a", "c"}, 1000, 6) // b waits; its blocks are reused
				h.generate(ids[:3], 5, maxTokens)       // b recomputes in chunks
				check("preempted", h, ids[:3]...)
			})
			t.Run("prefix-cache", func(t *testing.T) {
				h := newHarness(t, newRunner(t, m, be, cfg))
				h.add("c", prompts["c"], greedy(maxTokens))
				h.generate([]string{"c"}, 1000, 2)
				h.addWithPrefix("p", prompts["p"], greedy(maxTokens), "c", 3) // 12 tokens cached
				h.done("c")
				h.generate([]string{"p"}, 1000, maxTokens)
				check("prefix", h, "p")
			})
		})
	}
}

// spEncode is a small SentencePiece-style BPE encoder over tokenizer.json
// (vocab, merges, byte fallback) used to build prompts independently of
// the tokenizer package.
func spEncode(t *testing.T, dir, text string) ([]int32, map[int32]string) {
	t.Helper()
	var tj struct {
		Model struct {
			Vocab  map[string]int32 `json:"vocab"`
			Merges []string         `json:"merges"`
		} `json:"model"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &tj); err != nil {
		t.Fatal(err)
	}
	rank := map[string]int{}
	for i, m := range tj.Model.Merges {
		rank[m] = i
	}
	var syms []string
	for _, r := range "▁" + strings.ReplaceAll(text, " ", "▁") {
		syms = append(syms, string(r))
	}
	for {
		best, bi := -1, -1
		for i := 0; i+1 < len(syms); i++ {
			if r, ok := rank[syms[i]+" "+syms[i+1]]; ok && (best < 0 || r < best) {
				best, bi = r, i
			}
		}
		if bi < 0 {
			break
		}
		syms = append(syms[:bi], append([]string{syms[bi] + syms[bi+1]}, syms[bi+2:]...)...)
	}
	ids := []int32{1}
	for _, s := range syms {
		id, ok := tj.Model.Vocab[s]
		if !ok {
			for _, b := range []byte(s) {
				ids = append(ids, tj.Model.Vocab["<0x"+strings.ToUpper(strconv.FormatUint(uint64(b)|0x100, 16)[1:])+">"])
			}
			continue
		}
		ids = append(ids, id)
	}
	inv := map[int32]string{}
	for s, id := range tj.Model.Vocab {
		inv[id] = s
	}
	return ids, inv
}

// TestStories260KGreedy checks the real model's greedy continuation.
func TestStories260KGreedy(t *testing.T) {
	dir := sharedtest.Path(t, "models", "stories260K", "hf")
	be := greedyBackend{newCPU(t)}
	m := loadModel(t, dir, be)
	r := newRunner(t, m, be, Config{BlockSize: 16, NumBlocks: 16})
	prompt, vocab := spEncode(t, dir, "Once upon a time")
	h := newHarness(t, r)
	h.add("s", prompt, greedy(40))
	h.generate([]string{"s"}, 1000, 40)
	var sb strings.Builder
	for _, id := range h.seqs["s"].out {
		sb.WriteString(strings.ReplaceAll(vocab[id], "▁", " "))
	}
	got := sb.String()
	want := ", there was a little girl named Lily. She loved to play outside in the park."
	if !strings.HasPrefix(got, want) {
		t.Fatalf("greedy continuation\n got %q\nwant %q...", got, want)
	}
	t.Logf("Once upon a time%s", got)
}
