package runner

import (
	"fmt"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/kernel/cpu"
	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/scheduler"
)

// greedyBackend is the CPU backend with an argmax Sample, so that the
// forward-pass tests do not depend on the sampler.
type greedyBackend struct{ *cpu.Backend }

func (g greedyBackend) Sample(logits kernel.Buffer, vocab int, b *kernel.SampleBatch, res *kernel.SampleResult) error {
	v := make([]float32, len(b.Rows)*vocab)
	if err := g.Download(v, logits.Slice(0, len(v))); err != nil {
		return err
	}
	res.Tokens = res.Tokens[:0]
	for i := range b.Rows {
		if b.Rows[i].Temperature != 0 {
			return fmt.Errorf("greedyBackend samples greedily only")
		}
		row := v[i*vocab : (i+1)*vocab]
		best := 0
		for j, x := range row {
			if bias, ok := b.LogitBias[i][int32(j)]; ok {
				x += bias
			}
			bb := row[best]
			if bias, ok := b.LogitBias[i][int32(best)]; ok {
				bb += bias
			}
			if x > bb {
				best = j
			}
		}
		res.Tokens = append(res.Tokens, int32(best))
	}
	return nil
}

func newCPU(t testing.TB) *cpu.Backend {
	t.Helper()
	be, err := cpu.New(kernel.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

// harness is a minimal hand-driven scheduler: the test says how many tokens
// each request computes per step, and the harness builds the Output
// (blocks from a LIFO free list so freed blocks are reused with stale
// contents), runs it and records the sampled tokens.
type harness struct {
	t      testing.TB
	r      *Runner
	bs     int
	step   uint64
	free   []int32
	seqs   map[string]*hseq
	finish []string
}

type hseq struct {
	id          string
	prompt, out []int32
	blocks      []int32
	newBlocks   []int32
	computed    int
	sent        bool // the runner knows it
	resumed     bool
	params      scheduler.SamplingParams
	numCached   int
}

func newHarness(t testing.TB, r *Runner) *harness {
	h := &harness{t: t, r: r, bs: r.cfg.BlockSize, seqs: map[string]*hseq{}}
	for b := r.cfg.NumBlocks - 1; b >= 1; b-- {
		h.free = append(h.free, int32(b))
	}
	return h
}

func greedy(maxTokens int) scheduler.SamplingParams {
	p := scheduler.DefaultSamplingParams(maxTokens)
	p.Temperature = 0
	return p
}

func (h *harness) add(id string, prompt []int32, p scheduler.SamplingParams) *hseq {
	s := &hseq{id: id, prompt: prompt, params: p}
	h.seqs[id] = s
	return s
}

// addWithPrefix adds a request whose first n blocks are shared with from's
// (already computed) blocks, as a prefix-cache hit would.
func (h *harness) addWithPrefix(id string, prompt []int32, p scheduler.SamplingParams, from string, n int) *hseq {
	s := h.add(id, prompt, p)
	src := h.seqs[from]
	s.blocks = append(s.blocks, src.blocks[:n]...)
	s.computed = n * h.bs
	s.numCached = s.computed
	return s
}

func (s *hseq) tokens() []int32 { return append(append([]int32(nil), s.prompt...), s.out...) }

func (h *harness) alloc(s *hseq, upTo int) {
	need := (upTo + h.bs - 1) / h.bs
	for len(s.blocks) < need {
		if len(h.free) == 0 {
			h.t.Fatal("harness: out of blocks")
		}
		b := h.free[len(h.free)-1]
		h.free = h.free[:len(h.free)-1]
		s.blocks = append(s.blocks, b)
		s.newBlocks = append(s.newBlocks, b)
	}
}

func (h *harness) inUse(b int32) bool {
	for _, s := range h.seqs {
		if slices.Contains(s.blocks, b) {
			return true
		}
	}
	return false
}

// preempt frees s's blocks; the next schedule resumes it from scratch.
func (h *harness) preempt(id string) {
	s := h.seqs[id]
	for i := len(s.blocks) - 1; i >= 0; i-- {
		h.free = append(h.free, s.blocks[i])
	}
	s.blocks, s.newBlocks, s.computed, s.resumed = nil, nil, 0, true
}

// run executes one step where plan[id] tokens are computed for each id.
func (h *harness) run(order []string, plan map[string]int) *scheduler.RunnerOutput {
	h.t.Helper()
	h.step++
	out := &scheduler.Output{Step: h.step, NumScheduledTokens: map[string]int{}, FinishedRequestIDs: h.finish}
	h.finish = nil
	for _, id := range order {
		n := plan[id]
		if n == 0 {
			continue
		}
		s := h.seqs[id]
		h.alloc(s, s.computed+n)
		switch {
		case !s.sent:
			p := s.params
			out.NewRequests = append(out.NewRequests, scheduler.NewRequest{ID: id, PromptTokenIDs: s.prompt,
				BlockIDs: slices.Clone(s.blocks), NumComputedTokens: s.computed, Params: &p})
			s.sent = true
		case s.resumed:
			out.CachedRequests = append(out.CachedRequests, scheduler.CachedRequest{ID: id, Resumed: true,
				NewTokenIDs: slices.Clone(s.out), NewBlockIDs: slices.Clone(s.blocks), NumComputedTokens: s.computed})
			s.resumed = false
		default:
			out.CachedRequests = append(out.CachedRequests, scheduler.CachedRequest{ID: id,
				NewBlockIDs: slices.Clone(s.newBlocks), NumComputedTokens: s.computed})
		}
		s.newBlocks = nil
		out.NumScheduledTokens[id] = n
		out.TotalNumScheduledTokens += n
	}
	ro, err := h.r.Execute(out)
	if err != nil {
		h.t.Fatal(err)
	}
	if ro.Step != out.Step {
		h.t.Fatalf("runner output step %d, want %d", ro.Step, out.Step)
	}
	for id, n := range out.NumScheduledTokens {
		h.seqs[id].computed += n
	}
	for i, id := range ro.ReqIDs {
		s := h.seqs[id]
		if s.computed != len(s.prompt)+len(s.out) {
			h.t.Fatalf("request %s sampled at %d computed of %d tokens", id, s.computed, len(s.prompt)+len(s.out))
		}
		s.out = append(s.out, ro.SampledTokenIDs[i]...)
	}
	return ro
}

// generate runs every request to maxTokens outputs, each step computing at
// most chunk tokens per request (the remaining tokens of the token list).
func (h *harness) generate(ids []string, chunk int, maxTokens int) {
	h.t.Helper()
	for {
		plan := map[string]int{}
		for _, id := range ids {
			s := h.seqs[id]
			if len(s.out) >= maxTokens {
				continue
			}
			plan[id] = min(chunk, len(s.prompt)+len(s.out)-s.computed)
		}
		if len(plan) == 0 {
			return
		}
		h.run(ids, plan)
	}
}

func (h *harness) done(id string) {
	s := h.seqs[id]
	delete(h.seqs, id)
	for i := len(s.blocks) - 1; i >= 0; i-- {
		if !h.inUse(s.blocks[i]) {
			h.free = append(h.free, s.blocks[i])
		}
	}
	h.finish = append(h.finish, id)
}

func loadModel(t testing.TB, dir string, be kernel.Backend) *model.Model {
	t.Helper()
	m, err := model.Load(dir, be, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func newRunner(t testing.TB, m *model.Model, be kernel.Backend, cfg Config) *Runner {
	t.Helper()
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 4
	}
	if cfg.NumBlocks == 0 {
		cfg.NumBlocks = 256
	}
	if cfg.MaxNumSeqs == 0 {
		cfg.MaxNumSeqs = 8
	}
	if cfg.MaxNumBatchedTokens == 0 {
		cfg.MaxNumBatchedTokens = 256
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	r, err := New(m, be, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// normErr is max|a-b| / max|b|.
func normErr(a []float32, b []float64) float64 {
	num, den := 0.0, 0.0
	for i := range b {
		num = math.Max(num, math.Abs(float64(a[i])-b[i]))
		den = math.Max(den, math.Abs(b[i]))
	}
	return num / den
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
