//go:build cudaemu && !cuda

package cuda

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
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

// TestEmulatedCloseIsIdempotentAndSafe: Close may be called twice, or by
// several goroutines at once; calls racing it either run before the
// teardown or return an error, and none waits forever or crashes.
func TestEmulatedCloseIsIdempotentAndSafe(t *testing.T) {
	be, err := New(kernel.Options{}, Config{ComputeDType: kernel.F32})
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := be.Sync(); err == nil {
		t.Error("Sync after Close succeeded")
	}
	for range 50 {
		be, err := New(kernel.Options{}, Config{ComputeDType: kernel.F32})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 20 {
				if be.Sync() != nil {
					return
				}
			}
		}()
		var closers sync.WaitGroup
		for range 3 {
			closers.Go(func() {
				if err := be.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
		}
		closers.Wait()
		<-done
	}
}

// TestEmulatedElapsedKeepsAsyncError: a failure of queued work that
// Elapsed sees is still reported by the next Sync, whose contract it is.
func TestEmulatedElapsedKeepsAsyncError(t *testing.T) {
	be, err := New(kernel.Options{}, Config{ComputeDType: kernel.F32})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	from, err := be.Mark()
	if err != nil {
		t.Fatal(err)
	}
	if err := be.launch(kernelFunc{name: "missing", fn: "missing"}, dim3{1, 1, 1}, dim3{32, 1, 1}, 0); err != nil {
		t.Fatal(err) // queued: the failure comes later
	}
	to, err := be.Mark()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := be.Elapsed(from, to); err == nil {
		t.Error("Elapsed after a failed launch succeeded")
	}
	if err := be.Sync(); err == nil {
		t.Error("Sync after a failed launch succeeded: Elapsed took its error")
	}
}

// TestEmulatedComputeDTypeFollowsTheWeights: opened through the registry
// without VSERVE_CUDA_DTYPE, the backend computes in the weights' 16-bit
// dtype (so no weight matrix is widened at every MatMul), else in bf16;
// the variable still decides when set.
func TestEmulatedComputeDTypeFollowsTheWeights(t *testing.T) {
	for _, tc := range []struct {
		env, weights string
		want         kernel.DType
	}{
		{"", "float16", kernel.F16},
		{"", "bfloat16", kernel.BF16},
		{"", "float32", kernel.BF16},
		{"", "", kernel.BF16},
		{"f32", "float16", kernel.F32},
		{"bf16", "float16", kernel.BF16},
	} {
		t.Setenv(DTypeEnv, tc.env)
		be, err := kernel.Open(Name, kernel.Options{WeightsDType: tc.weights})
		if err != nil {
			t.Fatal(err)
		}
		if got := be.(*Backend).compute; got != tc.want {
			t.Errorf("%s=%q, weights %q: compute %v, want %v", DTypeEnv, tc.env, tc.weights, got, tc.want)
		}
		if err := be.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEmulatedStepBytes: the server's reservation for a step is
// ActivationBytes at the backend's compute dtype.
func TestEmulatedStepBytes(t *testing.T) {
	be, err := New(kernel.Options{}, Config{ComputeDType: kernel.BF16})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	s := kernel.StepShape{MaxTokens: 2048, MaxSeqs: 256, Hidden: 4096, Intermediate: 14336, NumHeads: 32, NumKVHeads: 8,
		HeadDim: 128, Vocab: 128256, MaxSeqLen: 8192}
	want := ActivationBytes(ActivationShape{StepShape: s, DTypeSize: 2}) // bf16
	if got := be.StepBytes(s); got != want {
		t.Errorf("StepBytes %d, want %d", got, want)
	}
	t.Logf("a Llama-3-8B-shaped step at 2048 tokens and 256 rows: %d MiB", want>>20)
}
