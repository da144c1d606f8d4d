package runner

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vserve/vserve/internal/cputime"
	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/kernel/cpu"
	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/scheduler"
	"go.uber.org/goleak"
)

var (
	benchThreads = flag.Int("bench.threads", 1, "CPU backend threads in benchmarks")
	benchKernels = flag.Bool("bench.kernels", false, "log the per-op time breakdown of each benchmark")
	benchSizes   = flag.String("bench.sizes", "15M,42M,110M", "model shapes the benchmarks generate")
	benchDType   = flag.String("bench.dtype", "f32", "weight dtype of the generated models: f32, f16 or bf16")
)

// Generated benchmark models are shared by all benchmarks of a run and
// removed by TestMain.
var (
	benchDirMu sync.Mutex
	benchRoot  string
	benchDirs  = map[string]string{}
)

func benchModel(b *testing.B, name string) string {
	benchDirMu.Lock()
	defer benchDirMu.Unlock()
	if d, ok := benchDirs[name]; ok {
		return d
	}
	if benchRoot == "" {
		var err error
		if benchRoot, err = os.MkdirTemp("", "vserve-bench-"); err != nil {
			b.Fatal(err)
		}
	}
	spec, ok := model.SpecByName(name)
	if !ok {
		b.Fatalf("unknown spec %s", name)
	}
	spec.DType = *benchDType
	dir := filepath.Join(benchRoot, name)
	if err := model.Generate(dir, spec, 1); err != nil {
		b.Fatal(err)
	}
	benchDirs[name] = dir
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchRoot != "" {
		os.RemoveAll(benchRoot)
	}
	// Backends start worker goroutines: every test must close its own.
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "goroutine leak:", err)
		code = 1
	}
	os.Exit(code)
}

func splitSizes() []string {
	var out []string
	start := 0
	s := *benchSizes
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// benchSetup loads a model on a (possibly profiled) CPU backend.
func benchSetup(b *testing.B, dir string, cfg Config) (*Runner, *model.Model, *OpProfile) {
	cb, err := cpu.New(kernel.Options{Threads: *benchThreads})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cb.Close() })
	var be kernel.Backend = cb
	var prof *OpProfile
	if *benchKernels {
		be, prof = Profile(cb)
	}
	m, err := model.Load(dir, be, model.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	r, err := New(m, be, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r, m, prof
}

func benchPrompt(n, vocab, salt int) []int32 {
	p := make([]int32, n)
	p[0] = 1
	for i := 1; i < n; i++ {
		p[i] = int32(3 + (i*7919+salt*104729)%(vocab-3))
	}
	return p
}

// BenchmarkDecode measures decode throughput: each iteration is one step
// in which every one of batch sequences computes one token and samples
// the next (greedy). Sequences start with a 32-token prompt (prefilled
// outside the timer) and are restarted when they reach 256 tokens, so
// the average context is about 144 tokens.
func BenchmarkDecode(b *testing.B) {
	const promptLen, ctx = 32, 256
	for _, size := range splitSizes() {
		dir := benchModel(b, size)
		for _, batch := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("%s/batch%d", size, batch), func(b *testing.B) {
				cfg := Config{BlockSize: 16, NumBlocks: batch*ctx/16 + 2, MaxNumSeqs: batch,
					MaxNumBatchedTokens: batch * promptLen, MaxModelLen: ctx, Seed: 1}
				r, m, prof := benchSetup(b, dir, cfg)
				h := newHarness(b, r)
				var ids []string
				next := 0
				restart := func() {
					for _, id := range ids {
						h.done(id)
					}
					ids = ids[:0]
					plan := map[string]int{}
					for i := 0; i < batch; i++ {
						id := fmt.Sprint(next)
						next++
						h.add(id, benchPrompt(promptLen, m.Config.VocabSize, next), scheduler.SamplingParams{RepetitionPenalty: 1, TopP: 1, MaxTokens: ctx, Logprobs: -1, PromptLogprobs: -1})
						ids = append(ids, id)
						plan[id] = promptLen
					}
					h.run(ids, plan)
				}
				restart()
				plan := map[string]int{}
				for _, id := range ids {
					plan[id] = 1
				}
				if prof != nil {
					prof.Reset()
				}
				var cpu cpuClock
				b.ResetTimer()
				cpu.start()
				for i := 0; i < b.N; i++ {
					if s := h.seqs[ids[0]]; len(s.prompt)+len(s.out) >= ctx {
						b.StopTimer()
						cpu.stop()
						restart()
						clear(plan)
						for _, id := range ids {
							plan[id] = 1
						}
						if prof != nil {
							prof.Reset()
						}
						cpu.start()
						b.StartTimer()
					}
					h.run(ids, plan)
				}
				cpu.stop()
				secs := b.Elapsed().Seconds()
				b.ReportMetric(float64(batch*b.N)/secs, "tok/s")
				cpu.report(b, float64(batch*b.N))
				weightBytes := float64(m.Config.NumParams() * int64(map[string]int{"f32": 4, "f16": 2, "bf16": 2}[*benchDType]))
				b.ReportMetric(weightBytes*float64(b.N)/secs/1e9, "weightGB/s")
				if prof != nil && b.N > 1 {
					fmt.Printf("%s: threads %d, per-op time of the last %d-step window:\n%s", b.Name(), *benchThreads, b.N, prof)
				}
			})
		}
	}
}

// BenchmarkPrefill measures prompt processing: each iteration prefills one
// prompt of len tokens in a single step and samples its first token.
func BenchmarkPrefill(b *testing.B) {
	for _, size := range splitSizes() {
		dir := benchModel(b, size)
		for _, n := range []int{128, 512} {
			b.Run(fmt.Sprintf("%s/len%d", size, n), func(b *testing.B) {
				cfg := Config{BlockSize: 16, NumBlocks: n/16 + 2, MaxNumSeqs: 1, MaxNumBatchedTokens: n, MaxModelLen: n + 16, Seed: 1}
				r, m, prof := benchSetup(b, dir, cfg)
				h := newHarness(b, r)
				prompt := benchPrompt(n, m.Config.VocabSize, 1)
				if prof != nil {
					prof.Reset()
				}
				var cpu cpuClock
				b.ResetTimer()
				cpu.start()
				for i := 0; i < b.N; i++ {
					id := fmt.Sprint(i)
					h.add(id, prompt, greedy(1))
					h.run([]string{id}, map[string]int{id: n})
					h.done(id)
				}
				cpu.stop()
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tok/s")
				cpu.report(b, float64(n*b.N))
				if prof != nil && b.N > 1 {
					fmt.Printf("%s: threads %d, per-op time over %d prefills:\n%s", b.Name(), *benchThreads, b.N, prof)
				}
			})
		}
	}
}

// cpuClock accumulates process CPU time over the timed regions. On a
// machine shared with other work, tokens per CPU-second measures the
// per-thread throughput that wall-clock tok/s understates.
type cpuClock struct {
	total, since time.Duration
}

func (c *cpuClock) start() { c.since = cputime.Process() }
func (c *cpuClock) stop()  { c.total += cputime.Process() - c.since }

func (c *cpuClock) report(b *testing.B, tokens float64) {
	if c.total > 0 {
		b.ReportMetric(tokens/c.total.Seconds(), "tok/cpu-s")
	}
}

var sink uint64

// BenchmarkMemoryBandwidth measures single-thread read bandwidth over
// 512 MiB (beyond any cache): the bound for decode, which streams every
// weight once per step.
func BenchmarkMemoryBandwidth(b *testing.B) {
	buf := make([]uint64, 64<<20)
	for i := range buf {
		buf[i] = uint64(i)
	}
	b.SetBytes(int64(len(buf) * 8))
	var cpu cpuClock
	b.ResetTimer()
	cpu.start()
	for i := 0; i < b.N; i++ {
		var s0, s1, s2, s3, s4, s5, s6, s7 uint64
		for j := 0; j+8 <= len(buf); j += 8 {
			v := buf[j : j+8 : j+8]
			s0 += v[0]
			s1 += v[1]
			s2 += v[2]
			s3 += v[3]
			s4 += v[4]
			s5 += v[5]
			s6 += v[6]
			s7 += v[7]
		}
		sink += s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
	}
	cpu.stop()
	if cpu.total > 0 {
		b.ReportMetric(float64(len(buf)*8*b.N)/cpu.total.Seconds()/1e9, "GB/cpu-s")
	}
}
