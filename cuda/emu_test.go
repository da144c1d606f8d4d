//go:build cudaemu && !cuda

package cuda

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"go.uber.org/goleak"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/kernel/cpu"
	"github.com/vserve/vserve/runtime/kernel/kerneltest"
	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/runtime/runner"
	"github.com/vserve/vserve/runtime/sample"
	"github.com/vserve/vserve/scheduler"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestEmulatedConformance runs the conformance suite on the whole backend
// (planning, argument packing, sampling plans, the allocator, the device
// goroutine) with the kernels executed on the CPU by cuda/internal/emu:
//
//	go test -tags cudaemu -skip 'TestEmulatedConformance/.*/Sample' ./cuda/
//
// (the suite's Sample cases draw thousands of rows, each one block of
// 1024 emulated threads: too slow here; TestEmulatedSampleMatchesCPU and
// cuda/kernels/emu cover sampling).
func TestEmulatedConformance(t *testing.T) {
	for _, dt := range []kernel.DType{kernel.F32, kernel.F16, kernel.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			be, err := New(kernel.Options{}, Config{ComputeDType: dt})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := be.Close(); err != nil {
					t.Error(err)
				}
			}()
			kerneltest.Run(t, be)
		})
	}
}

// TestEmulatedSampleMatchesCPU checks the device sampler end to end (the
// Go packing of parameters, penalties and bias, both kernels, the
// unpacking) against runtime/sample, on a few rows: the emulation runs
// 1024 OS threads per row.
func TestEmulatedSampleMatchesCPU(t *testing.T) {
	be, err := New(kernel.Options{}, Config{ComputeDType: kernel.BF16})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	r := rand.New(rand.NewPCG(3, 4))
	vocab := 2600
	modes := []kernel.SampleParams{
		{TopP: 1, RepetitionPenalty: 1.2, NumLogprobs: 3},
		{Temperature: 0.8, TopK: 50, TopP: 0.9, RepetitionPenalty: 1, PresencePenalty: 0.5, FrequencyPenalty: 0.2, NumLogprobs: 2},
		{Temperature: 1, TopP: 0.95, MinP: 0.01, RepetitionPenalty: 1.1, NumLogprobs: -1},
		{Temperature: 1, TopP: 1, RepetitionPenalty: 1, NumLogprobs: 0},
	}
	b := &kernel.SampleBatch{}
	for i, p := range modes {
		p.Seed, p.Offset = uint64(77+i), uint64(i*3)
		b.Rows = append(b.Rows, p)
		b.PromptTokens = append(b.PromptTokens, []int32{int32(r.IntN(vocab)), 5, 5})
		b.OutputTokens = append(b.OutputTokens, []int32{5, int32(r.IntN(vocab)), 9, 9})
		b.LogitBias = append(b.LogitBias, map[int32]float32{int32(r.IntN(vocab)): 3, 11: float32(math.Inf(-1))})
	}
	logits := make([]float32, len(modes)*vocab)
	for i := range logits {
		logits[i] = float32(r.NormFloat64() * 3)
	}
	want := &kernel.SampleResult{}
	if err := sample.Sample(logits, vocab, b, want); err != nil {
		t.Fatal(err)
	}
	lb, err := be.Alloc(kernel.F32, len(logits))
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Upload(lb, logits); err != nil {
		t.Fatal(err)
	}
	got := &kernel.SampleResult{}
	if err := be.Sample(lb, vocab, b, got); err != nil {
		t.Fatal(err)
	}
	for i, p := range modes {
		if got.Tokens[i] != want.Tokens[i] {
			t.Errorf("row %d: token %d, runtime/sample %d", i, got.Tokens[i], want.Tokens[i])
		}
		if p.NumLogprobs < 0 {
			continue
		}
		if got.Ranks[i] != want.Ranks[i] || math.Abs(float64(got.Logprobs[i]-want.Logprobs[i])) > 1e-5 ||
			!slices.Equal(got.TopIDs[i], want.TopIDs[i]) {
			t.Errorf("row %d: logprob %v rank %d top %v; runtime/sample %v rank %d top %v", i, got.Logprobs[i], got.Ranks[i],
				got.TopIDs[i], want.Logprobs[i], want.Ranks[i], want.TopIDs[i])
		}
	}
}

// TestEmulatedGreedyMatchesCPU serves a random-weight model (vserve's
// tiny spec: GQA 2, head dim 8) through the scheduler and the runner on
// the emulated backend (f32) and on the CPU backend: the greedy tokens
// must be the same.
func TestEmulatedGreedyMatchesCPU(t *testing.T) {
	dir := t.TempDir()
	if err := model.Generate(dir, model.SpecTiny, 3); err != nil {
		t.Fatal(err)
	}
	prompts := [][]int32{{1, 5, 9}, {1, 100, 200, 300, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, {1, 2}}
	ref, err := cpu.New(kernel.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	be, err := New(kernel.Options{}, Config{ComputeDType: kernel.F32})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	want := greedyTokens(t, dir, ref, prompts, 8)
	got := greedyTokens(t, dir, be, prompts, 8)
	for i := range prompts {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("prompt %d: emulated GPU %v, CPU %v", i, got[i], want[i])
		}
	}
}

// greedyTokens is the engine loop in miniature: scheduler, runner, model.
func greedyTokens(t *testing.T, dir string, be kernel.Backend, prompts [][]int32, maxTokens int) [][]int32 {
	t.Helper()
	m, err := model.Load(dir, be, model.LoadOptions{NoMap: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sc := scheduler.Config{MaxModelLen: 128, BlockSize: 16, NumBlocks: 32, MaxNumBatchedTokens: 16, MaxNumSeqs: 4}
	s, err := scheduler.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := runner.New(m, be, runner.Config{BlockSize: sc.BlockSize, NumBlocks: sc.NumBlocks, MaxNumSeqs: sc.MaxNumSeqs,
		MaxNumBatchedTokens: sc.MaxNumBatchedTokens, MaxModelLen: sc.MaxModelLen, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := scheduler.DefaultSamplingParams(maxTokens)
	p.Temperature = 0
	p.IgnoreEOS = true
	for i, pr := range prompts {
		if err := s.AddRequest(&scheduler.Request{ID: strconv.Itoa(i), PromptTokenIDs: pr, Params: p}); err != nil {
			t.Fatal(err)
		}
	}
	out := make([][]int32, len(prompts))
	for steps := 0; s.HasUnfinished(); steps++ {
		if steps > 1000 {
			t.Fatal("no progress")
		}
		so := s.Schedule()
		ro, err := r.Execute(so)
		if err != nil {
			t.Fatal(err)
		}
		deltas, _ := s.Update(so, ro)
		for _, d := range deltas {
			i, _ := strconv.Atoi(d.ID)
			out[i] = append(out[i], d.NewTokenIDs...)
		}
	}
	return out
}

// TestEmulatedDecodePath runs decode batches (one query token per
// sequence) through PagedAttention on the emulated backend, checks that
// the plan takes the decode path, and compares the output with a float64
// reference. The caches are bf16 or f16; block 0 (the null block, padding
// in the block tables) and every slot past a sequence's end hold NaN.
func TestEmulatedDecodePath(t *testing.T) {
	tests := []struct {
		name                               string
		dt                                 kernel.DType
		heads, kvHeads, headDim, blockSize int
		lens                               []int
		wantParts                          int
	}{
		{"llama-8B shape bf16, 3 partitions", kernel.BF16, 32, 8, 128, 16, []int{300, 129}, 3},
		{"GQA 8 head dim 64 f16 block 32, 6 partitions", kernel.F16, 16, 2, 64, 32, []int{333, 40, 2, 97}, 6},
		{"MHA head dim 64 bf16 one partition", kernel.BF16, 4, 4, 64, 16, []int{60, 17}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be, err := New(kernel.Options{}, Config{ComputeDType: tc.dt})
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			checkDecode(t, be, tc.dt, tc.heads, tc.kvHeads, tc.headDim, tc.blockSize, tc.lens, tc.wantParts)
		})
	}
}

func checkDecode(t *testing.T, be *Backend, dt kernel.DType, heads, kvHeads, hd, bs int, lens []int, wantParts int) {
	t.Helper()
	r := rand.New(rand.NewPCG(5, uint64(hd)))
	seqs, maxLen := len(lens), slices.Max(lens)
	maxBlocks := (maxLen + bs - 1) / bs
	numBlocks := 1 + seqs*maxBlocks
	perm := r.Perm(numBlocks - 1)
	tables := make([]int32, seqs*maxBlocks) // zero: the null block
	row := kvHeads * bs * hd                // elements of one block
	nanBits := kernel.FromF32(dt, float32(math.NaN()))
	kRaw, vRaw := make([]uint16, numBlocks*row), make([]uint16, numBlocks*row)
	for i := range kRaw {
		kRaw[i], vRaw[i] = nanBits, nanBits
	}
	slot := func(s, p, kvh, d int) int {
		return ((int(tables[s*maxBlocks+p/bs])*kvHeads+kvh)*bs+p%bs)*hd + d
	}
	next := 0
	for s, l := range lens {
		for b := 0; b*bs < l; b++ {
			tables[s*maxBlocks+b] = int32(perm[next] + 1)
			next++
		}
		for p := range l {
			for kvh := range kvHeads {
				for d := range hd {
					kRaw[slot(s, p, kvh, d)] = kernel.FromF32(dt, float32(r.NormFloat64()))
					vRaw[slot(s, p, kvh, d)] = kernel.FromF32(dt, float32(r.NormFloat64()))
				}
			}
		}
	}
	q := make([]float32, seqs*heads*hd)
	qRaw := make([]uint16, len(q))
	for i := range q {
		qRaw[i] = kernel.FromF32(dt, float32(r.NormFloat64()))
		q[i] = kernel.ToF32(dt, qRaw[i])
	}
	qStart, seqLens := make([]int32, seqs+1), make([]int32, seqs)
	for s, l := range lens {
		qStart[s+1] = int32(s + 1)
		seqLens[s] = int32(l)
	}
	up := func(dt kernel.DType, n int, src any) kernel.Buffer {
		b, err := be.Alloc(dt, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := be.Upload(b, src); err != nil {
			t.Fatal(err)
		}
		return b
	}
	meta := &kernel.AttentionMeta{
		NumTokens: seqs, NumSeqs: seqs, MaxQueryLen: 1, MaxSeqLen: maxLen, BlockSize: bs, MaxBlocksPerSeq: maxBlocks,
		NumHeads: heads, NumKVHeads: kvHeads, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd))),
		QueryStart: up(kernel.I32, seqs+1, qStart), SeqLens: up(kernel.I32, seqs, seqLens),
		BlockTables: up(kernel.I32, len(tables), tables),
	}
	p, ok := planDecode(meta, be.numSMs)
	if !ok || p.numParts != wantParts {
		t.Fatalf("plan %+v (decode path %v), want %d partitions", p, ok, wantParts)
	}
	out := make([]uint16, seqs*heads*hd)
	for i := range out {
		out[i] = nanBits
	}
	ob := up(dt, len(out), out)
	if err := be.PagedAttention(ob, up(dt, len(qRaw), qRaw), up(dt, len(kRaw), kRaw), up(dt, len(vRaw), vRaw), meta); err != nil {
		t.Fatal(err)
	}
	if err := be.Download(out, ob); err != nil {
		t.Fatal(err)
	}
	var num, den float64
	g := heads / kvHeads
	for s, l := range lens {
		for h := range heads {
			scores := make([]float64, l)
			mx := math.Inf(-1)
			for p := range l {
				var dot float64
				for d := range hd {
					dot += float64(q[(s*heads+h)*hd+d]) * float64(kernel.ToF32(dt, kRaw[slot(s, p, h/g, d)]))
				}
				scores[p] = dot * float64(meta.Scale)
				mx = max(mx, scores[p])
			}
			var sum float64
			for p := range scores {
				scores[p] = math.Exp(scores[p] - mx)
				sum += scores[p]
			}
			for d := range hd {
				var a float64
				for p := range l {
					a += scores[p] * float64(kernel.ToF32(dt, vRaw[slot(s, p, h/g, d)]))
				}
				want := a / sum
				diff := float64(kernel.ToF32(dt, out[(s*heads+h)*hd+d])) - want
				num += diff * diff
				den += want * want
			}
		}
	}
	// The output is rounded to the 16-bit type: about 2^-9 relative.
	if e := math.Sqrt(num / den); !(e < 4e-3) {
		t.Fatalf("normalised error %g", e)
	}
}
