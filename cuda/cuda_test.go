//go:build cuda

package cuda_test

// These tests need an NVIDIA GPU (compute capability 8.0+) and cuBLAS
// (VSERVE_CUBLAS_DIR or the loader's path). Plain CI only compiles them
// (cuda/ci.sh); bench/gpu/check.sh runs them on a GPU machine.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/vserve/vserve/cuda"
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

// open opens device 0 with the given compute dtype and closes it with the test.
func open(tb testing.TB, dt kernel.DType) *cuda.Backend {
	tb.Helper()
	cfg, err := cuda.ConfigFromEnv()
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ComputeDType = dt
	be, err := cuda.New(kernel.Options{Device: 0}, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := be.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return be
}

func openCPU(tb testing.TB) *cpu.Backend {
	tb.Helper()
	be, err := cpu.New(kernel.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { be.Close() })
	return be
}

var computeTypes = []kernel.DType{kernel.BF16, kernel.F16, kernel.F32}

// TestConformance runs the shared conformance suite (every op against
// float64 references, NaN-poisoned outputs and caches) in each compute dtype.
func TestConformance(t *testing.T) {
	for _, dt := range computeTypes {
		t.Run(dt.String(), func(t *testing.T) {
			be := open(t, dt)
			t.Logf("%s, compute capability %s", be.DeviceName(), must2(be.ComputeCapability()))
			kerneltest.Run(t, be)
		})
	}
}

func must2(a, b int) string { return fmt.Sprintf("%d.%d", a, b) }

func TestRegistered(t *testing.T) {
	if !slices.Contains(kernel.Names(), cuda.Name) {
		t.Fatalf("backends %v lack %q", kernel.Names(), cuda.Name)
	}
	be, err := kernel.Open(cuda.Name, kernel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	soname, v := be.(*cuda.Backend).CublasVersion()
	t.Logf("cuBLAS %s version %d, compute %v", soname, v, be.ComputeDType())
}

// upload copies float values into a new buffer of dt.
func upload(tb testing.TB, be kernel.Backend, dt kernel.DType, v []float32) kernel.Buffer {
	tb.Helper()
	b, err := be.Alloc(dt, len(v))
	if err != nil {
		tb.Fatal(err)
	}
	var src any = v
	if dt != kernel.F32 {
		bits := make([]uint16, len(v))
		for i, x := range v {
			bits[i] = kernel.FromF32(dt, x)
		}
		src = bits
	}
	if err := be.Upload(b, src); err != nil {
		tb.Fatal(err)
	}
	return b
}

func uploadInts(tb testing.TB, be kernel.Backend, v []int32) kernel.Buffer {
	tb.Helper()
	b, err := be.Alloc(kernel.I32, len(v))
	if err != nil {
		tb.Fatal(err)
	}
	if err := be.Upload(b, v); err != nil {
		tb.Fatal(err)
	}
	return b
}

func download(tb testing.TB, be kernel.Backend, b kernel.Buffer) []float32 {
	tb.Helper()
	if err := be.Sync(); err != nil {
		tb.Fatal(err)
	}
	out := make([]float32, b.Len())
	if b.DType() == kernel.F32 {
		if err := be.Download(out, b); err != nil {
			tb.Fatal(err)
		}
		return out
	}
	bits := make([]uint16, b.Len())
	if err := be.Download(bits, b); err != nil {
		tb.Fatal(err)
	}
	for i, x := range bits {
		out[i] = kernel.ToF32(b.DType(), x)
	}
	return out
}

func normals(r *rand.Rand, n int, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * sd)
	}
	return v
}

func normErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / max(den, 1e-30))
}

// TestFusedAddRMSNorm checks the optional fused op against Add then
// RMSNorm on the CPU backend.
func TestFusedAddRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	be, ref := open(t, kernel.F32), openCPU(t)
	rows, dim := 7, 1000
	x, res, w := normals(r, rows*dim, 1), normals(r, rows*dim, 1), normals(r, dim, 1)
	gx, gr, gw := upload(t, be, kernel.F32, x), upload(t, be, kernel.F32, res), upload(t, be, kernel.F32, w)
	if err := be.FusedAddRMSNorm(gx, gr, gw, rows, dim, 1e-5); err != nil {
		t.Fatal(err)
	}
	cx, cr, cw := upload(t, ref, kernel.F32, x), upload(t, ref, kernel.F32, res), upload(t, ref, kernel.F32, w)
	if err := ref.Add(cr, cx, cr, rows*dim); err != nil {
		t.Fatal(err)
	}
	if err := ref.RMSNorm(cx, cr, cw, rows, dim, 1e-5); err != nil {
		t.Fatal(err)
	}
	if e := normErr(download(t, be, gr), download(t, ref, cr)); e > 1e-6 {
		t.Errorf("residual: normalised error %g", e)
	}
	if e := normErr(download(t, be, gx), download(t, ref, cx)); e > 1e-5 {
		t.Errorf("normed: normalised error %g", e)
	}
}

// TestLongContextAttention exercises the split-KV path (long contexts,
// few sequences) and block size 32 against the CPU backend.
func TestLongContextAttention(t *testing.T) {
	for _, tc := range []struct {
		heads, kvHeads, headDim, bs int
		ctx, q                      []int
	}{
		{32, 8, 128, 16, []int{4095, 1000}, []int{1, 1}},
		{8, 8, 64, 32, []int{3000}, []int{1}},
		{16, 2, 128, 16, []int{1500, 0}, []int{40, 300}},
	} {
		t.Run(fmt.Sprintf("%dh%dkv%dd_bs%d", tc.heads, tc.kvHeads, tc.headDim, tc.bs), func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, uint64(tc.headDim)))
			be, ref := open(t, kernel.F32), openCPU(t)
			row := tc.kvHeads * tc.headDim
			var qStart, seqLens, tables []int32
			qStart = append(qStart, 0)
			maxBlocks, tokens, maxQ, maxL := 0, 0, 0, 0
			for i := range tc.ctx {
				l := tc.ctx[i] + tc.q[i]
				maxBlocks = max(maxBlocks, (l+tc.bs-1)/tc.bs)
				tokens += tc.q[i]
				qStart = append(qStart, int32(tokens))
				seqLens = append(seqLens, int32(l))
				maxQ, maxL = max(maxQ, tc.q[i]), max(maxL, l)
			}
			numBlocks := 1 + len(tc.ctx)*maxBlocks
			perm := r.Perm(numBlocks - 1)
			for i := range tc.ctx {
				for j := range maxBlocks {
					tables = append(tables, int32(1+perm[i*maxBlocks+j]))
				}
			}
			cacheK, cacheV := normals(r, numBlocks*tc.bs*row, 1), normals(r, numBlocks*tc.bs*row, 1)
			q := normals(r, tokens*tc.heads*tc.headDim, 1)
			scale := float32(1 / math.Sqrt(float64(tc.headDim)))
			run := func(b kernel.Backend) []float32 {
				meta := &kernel.AttentionMeta{NumTokens: tokens, NumSeqs: len(tc.ctx),
					QueryStart: uploadInts(t, b, qStart), SeqLens: uploadInts(t, b, seqLens), BlockTables: uploadInts(t, b, tables),
					MaxBlocksPerSeq: maxBlocks, MaxQueryLen: maxQ, MaxSeqLen: maxL, BlockSize: tc.bs,
					NumHeads: tc.heads, NumKVHeads: tc.kvHeads, HeadDim: tc.headDim, Scale: scale}
				out, err := b.Alloc(kernel.F32, len(q))
				if err != nil {
					t.Fatal(err)
				}
				if err := b.PagedAttention(out, upload(t, b, kernel.F32, q), upload(t, b, kernel.F32, cacheK),
					upload(t, b, kernel.F32, cacheV), meta); err != nil {
					t.Fatal(err)
				}
				return download(t, b, out)
			}
			if e := normErr(run(be), run(ref)); e > 2e-5 || math.IsNaN(e) {
				t.Errorf("normalised error %g", e)
			}
		})
	}
}

// TestSampleMatchesCPU draws with the device sampler and with
// runtime/sample on the same logits: tokens, logprobs, ranks and top
// logprobs must agree, for the shared-memory path (few candidates) and
// the radix path (many), with penalties and bias.
func TestSampleMatchesCPU(t *testing.T) {
	be := open(t, kernel.BF16)
	r := rand.New(rand.NewPCG(5, 6))
	for _, vocab := range []int{1000, 32000, 128256} {
		modes := []kernel.SampleParams{
			{TopP: 1, RepetitionPenalty: 1, NumLogprobs: 5},                                             // greedy
			{Temperature: 1, TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1},                            // plain: radix path
			{Temperature: 0.7, TopP: 0.9, RepetitionPenalty: 1, NumLogprobs: 0},                         // top-p over the vocabulary
			{Temperature: 0.8, TopK: 50, TopP: 0.9, RepetitionPenalty: 1, NumLogprobs: 3},               // few candidates
			{Temperature: 1.2, TopK: 4000, MinP: 0.001, TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1}, // top-k above the shared-memory bound
			{Temperature: 1, MinP: 0.2, TopP: 1, RepetitionPenalty: 1.3, PresencePenalty: 0.5, FrequencyPenalty: 0.25, NumLogprobs: 1},
		}
		for mi, p := range modes {
			t.Run(fmt.Sprintf("v%d/mode%d", vocab, mi), func(t *testing.T) {
				rows := 24
				logits := normals(r, rows*vocab, 3)
				b := &kernel.SampleBatch{}
				for i := range rows {
					p := p
					p.Seed, p.Offset = uint64(1000+i*7), uint64(i)
					b.Rows = append(b.Rows, p)
					prompt := []int32{int32(r.IntN(vocab)), int32(r.IntN(vocab)), 3}
					output := []int32{int32(r.IntN(vocab)), 3, 3}
					b.PromptTokens = append(b.PromptTokens, prompt)
					b.OutputTokens = append(b.OutputTokens, output)
					b.LogitBias = append(b.LogitBias, map[int32]float32{int32(r.IntN(vocab)): 2.5, 7: float32(math.Inf(-1))})
				}
				want := &kernel.SampleResult{}
				if err := sample.Sample(logits, vocab, b, want); err != nil {
					t.Fatal(err)
				}
				got := &kernel.SampleResult{}
				if err := be.Sample(upload(t, be, kernel.F32, logits), vocab, b, got); err != nil {
					t.Fatal(err)
				}
				mismatch := 0
				for i := range rows {
					if got.Tokens[i] != want.Tokens[i] {
						mismatch++
						t.Logf("row %d: token %d, CPU %d", i, got.Tokens[i], want.Tokens[i])
					}
					if p.NumLogprobs < 0 {
						continue
					}
					if math.Abs(float64(got.Logprobs[i]-want.Logprobs[i])) > 1e-4 || got.Ranks[i] != want.Ranks[i] {
						t.Errorf("row %d: logprob %v rank %d, CPU %v rank %d", i, got.Logprobs[i], got.Ranks[i], want.Logprobs[i], want.Ranks[i])
					}
					if !slices.Equal(got.TopIDs[i], want.TopIDs[i]) {
						t.Errorf("row %d: top ids %v, CPU %v", i, got.TopIDs[i], want.TopIDs[i])
					}
				}
				// The specification lets implementations differ only when the
				// uniform falls within rounding of a boundary: essentially never.
				if mismatch > 0 {
					t.Errorf("%d of %d tokens differ from runtime/sample", mismatch, rows)
				}
			})
		}
	}
}

func TestSampleErrors(t *testing.T) {
	be := open(t, kernel.BF16)
	vocab := 64
	logits := make([]float32, 2*vocab)
	logits[vocab+3] = float32(math.NaN())
	b := &kernel.SampleBatch{Rows: []kernel.SampleParams{{TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1}, {TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1}}}
	err := be.Sample(upload(t, be, kernel.F32, logits), vocab, b, &kernel.SampleResult{})
	if !errors.Is(err, sample.ErrNonFinite) {
		t.Errorf("NaN logit: %v, want ErrNonFinite", err)
	}
	for i := range logits {
		logits[i] = float32(math.Inf(-1))
	}
	err = be.Sample(upload(t, be, kernel.F32, logits), vocab, b, &kernel.SampleResult{})
	if !errors.Is(err, sample.ErrAllMasked) {
		t.Errorf("all -Inf: %v, want ErrAllMasked", err)
	}
	b.Rows[0].TopP = 0
	if err := be.Sample(upload(t, be, kernel.F32, logits), vocab, b, &kernel.SampleResult{}); !errors.Is(err, sample.ErrInvalid) {
		t.Errorf("top_p 0: %v, want ErrInvalid", err)
	}
}

func TestGatherOutOfRangeIsAnError(t *testing.T) {
	be := open(t, kernel.F32)
	table := upload(t, be, kernel.F32, make([]float32, 4*8))
	out, _ := be.Alloc(kernel.F32, 2*8)
	if err := be.Embedding(out, table, uploadInts(t, be, []int32{1, 4}), 2, 8); err != nil {
		t.Fatal(err)
	}
	if err := be.Sync(); err == nil {
		t.Fatal("Sync after an out-of-range embedding id: no error")
	}
	if err := be.Sync(); err != nil {
		t.Fatalf("the error is reported once: %v", err)
	}
}

func TestEventTimer(t *testing.T) {
	be := open(t, kernel.BF16)
	var timer cuda.EventTimer = be
	m0, err := timer.Mark()
	if err != nil {
		t.Fatal(err)
	}
	n := 1 << 24
	a := upload(t, be, kernel.F32, make([]float32, n))
	for range 20 {
		if err := be.Add(a, a, a, n); err != nil {
			t.Fatal(err)
		}
	}
	m1, err := timer.Mark()
	if err != nil {
		t.Fatal(err)
	}
	d, err := timer.Elapsed(m0, m1)
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Errorf("20 adds over 64 MiB took %v of device time", d)
	}
	timer.ReleaseMarks(m0, m1)
	m2, _ := timer.Mark()
	if m2 != m1 && m2 != m0 {
		t.Errorf("released marks are not reused: got %d", m2)
	}
	if _, err := timer.Elapsed(m0, 99); err == nil {
		t.Error("Elapsed with an unknown mark: no error")
	}
}

// testSpec is a random Llama-family model with real head dimensions.
var testSpec = model.Spec{Name: "cuda-test", Hidden: 256, Intermediate: 688, Layers: 3, Heads: 4, KVHeads: 2,
	Vocab: 2048, MaxPos: 1024, Tied: false, DType: "bf16"}

// generate writes the random model once per test binary run.
func generate(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := model.Generate(dir, testSpec, 7); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// runGreedy serves prompts with greedy decoding through the scheduler and
// the runner (the engine loop in miniature) and returns the tokens.
func runGreedy(tb testing.TB, dir string, be kernel.Backend, prompts [][]int32, maxTokens int) [][]int32 {
	tb.Helper()
	m, err := model.Load(dir, be, model.LoadOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	defer m.Close()
	sc := scheduler.Config{MaxModelLen: 512, BlockSize: 16, NumBlocks: 256, MaxNumBatchedTokens: 128, MaxNumSeqs: 8}
	s, err := scheduler.New(sc)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := runner.New(m, be, runner.Config{BlockSize: sc.BlockSize, NumBlocks: sc.NumBlocks,
		MaxNumSeqs: sc.MaxNumSeqs, MaxNumBatchedTokens: sc.MaxNumBatchedTokens, MaxModelLen: sc.MaxModelLen, Seed: 1})
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	p := scheduler.DefaultSamplingParams(maxTokens)
	p.Temperature = 0
	p.IgnoreEOS = true
	for i, pr := range prompts {
		if err := s.AddRequest(&scheduler.Request{ID: fmt.Sprint(i), PromptTokenIDs: pr, Params: p}); err != nil {
			tb.Fatal(err)
		}
	}
	out := make([][]int32, len(prompts))
	for steps := 0; s.HasUnfinished(); steps++ {
		if steps > 10000 {
			tb.Fatal("no progress")
		}
		so := s.Schedule()
		ro, err := r.Execute(so)
		if err != nil {
			tb.Fatal(err)
		}
		deltas, _ := s.Update(so, ro)
		for _, d := range deltas {
			var i int
			fmt.Sscan(d.ID, &i)
			out[i] = append(out[i], d.NewTokenIDs...)
		}
	}
	return out
}

// TestGreedyMatchesCPU serves a random-weight bf16 model (head dim 64,
// GQA 2, chunked prefills of up to 300 tokens mixed with decodes) on the
// GPU and on the CPU: with f32 activations the greedy tokens must be the
// same; with bf16 activations the agreement is reported.
func TestGreedyMatchesCPU(t *testing.T) {
	dir := generate(t)
	r := rand.New(rand.NewPCG(9, 9))
	var prompts [][]int32
	for _, n := range []int{1, 5, 17, 40, 130, 300} {
		p := make([]int32, n)
		for i := range p {
			p[i] = int32(r.IntN(testSpec.Vocab))
		}
		prompts = append(prompts, p)
	}
	const maxTokens = 24
	want := runGreedy(t, dir, openCPU(t), prompts, maxTokens)
	for _, dt := range []kernel.DType{kernel.F32, kernel.BF16} {
		got := runGreedy(t, dir, open(t, dt), prompts, maxTokens)
		same, total := 0, 0
		for i := range prompts {
			for j := range want[i] {
				total++
				if j < len(got[i]) && got[i][j] == want[i][j] {
					same++
				}
			}
			if dt == kernel.F32 && !slices.Equal(got[i], want[i]) {
				t.Errorf("f32 prompt %d (%d tokens): GPU %v, CPU %v", i, len(prompts[i]), got[i], want[i])
			}
		}
		t.Logf("%v activations: %d of %d greedy tokens equal to the CPU path", dt, same, total)
	}
}

// TestForwardLogitsMatchCPU compares the logits of one mixed batch
// (prefill) by normalised error, per compute dtype.
func TestForwardLogitsMatchCPU(t *testing.T) {
	dir := generate(t)
	r := rand.New(rand.NewPCG(11, 12))
	prompt := make([]int32, 64)
	for i := range prompt {
		prompt[i] = int32(r.IntN(testSpec.Vocab))
	}
	logits := func(be kernel.Backend) []float32 {
		m, err := model.Load(dir, be, model.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		kv, err := m.NewKVCache(8, 16)
		if err != nil {
			t.Fatal(err)
		}
		defer kv.Free()
		ws, err := m.NewWorkspace(len(prompt), len(prompt))
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Free()
		pos, slots, rows := make([]int32, len(prompt)), make([]int32, len(prompt)), make([]int32, len(prompt))
		for i := range prompt {
			pos[i], slots[i], rows[i] = int32(i), int32(16+i), int32(i)
		}
		b := &model.Batch{NumTokens: len(prompt), TokenIDs: uploadInts(t, be, prompt), Positions: uploadInts(t, be, pos),
			SlotMapping: uploadInts(t, be, slots), NumLogits: len(prompt), LogitRows: uploadInts(t, be, rows)}
		b.Attn = kernel.AttentionMeta{NumSeqs: 1, QueryStart: uploadInts(t, be, []int32{0, int32(len(prompt))}),
			SeqLens: uploadInts(t, be, []int32{int32(len(prompt))}), BlockTables: uploadInts(t, be, []int32{1, 2, 3, 4, 5, 6, 7}),
			MaxBlocksPerSeq: 7, MaxQueryLen: len(prompt), MaxSeqLen: len(prompt)}
		out, err := m.Forward(ws, kv, b)
		if err != nil {
			t.Fatal(err)
		}
		return download(t, be, out)
	}
	want := logits(openCPU(t))
	for _, tc := range []struct {
		dt  kernel.DType
		tol float64
	}{{kernel.F32, 1e-4}, {kernel.F16, 2e-2}, {kernel.BF16, 8e-2}} {
		e := normErr(logits(open(t, tc.dt)), want)
		t.Logf("%v: logits normalised error %.3g", tc.dt, e)
		if !(e <= tc.tol) {
			t.Errorf("%v: logits normalised error %.3g > %.3g", tc.dt, e, tc.tol)
		}
	}
}
