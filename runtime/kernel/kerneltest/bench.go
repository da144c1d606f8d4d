package kerneltest

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vserve/vserve/runtime/kernel"
)

// BenchOptions bound the benchmarks a backend runs.
type BenchOptions struct {
	// MaxBytes skips cases whose buffers need more memory than this
	// (0: no limit), e.g. the large attention contexts on a CPU.
	MaxBytes int64
	// CPUTime, when set, returns the CPU time the process has used so
	// far; the benchmarks then also report their rates per CPU-second
	// ("GFLOP/cpu-s", "GB/cpu-s"), which stay meaningful on a machine
	// shared with other work, where wall-clock rates do not.
	CPUTime func() time.Duration
}

// rates reports amount/second by wall clock under unit, and per CPU
// second under the unit with "/s" replaced by "/cpu-s" when CPUTime is set.
type rates struct {
	b   *testing.B
	o   BenchOptions
	cpu time.Duration
}

func (o BenchOptions) start(b *testing.B) *rates {
	r := &rates{b: b, o: o}
	if o.CPUTime != nil {
		r.cpu = o.CPUTime()
	}
	return r
}

// stop must be called right after the timed loop.
func (r *rates) stop() {
	if r.o.CPUTime != nil {
		r.cpu = r.o.CPUTime() - r.cpu
	}
}

func (r *rates) report(total float64, unit string) {
	r.b.ReportMetric(total/r.b.Elapsed().Seconds(), unit+"/s")
	if r.o.CPUTime != nil && r.cpu > 0 {
		r.b.ReportMetric(total/r.cpu.Seconds(), unit+"/cpu-s")
	}
}

func (o BenchOptions) skip(b *testing.B, bytes int64) {
	if o.MaxBytes > 0 && bytes > o.MaxBytes {
		b.Skipf("needs %d MiB > the %d MiB limit", bytes>>20, o.MaxBytes>>20)
	}
}

// benchHarness fills buffers with a cheap deterministic pattern (values
// do not matter for timing, only that they are finite and varied).
type benchHarness struct {
	b  *testing.B
	be kernel.Backend
}

func (h benchHarness) buf(dt kernel.DType, n int) kernel.Buffer {
	h.b.Helper()
	buf, err := h.be.Alloc(dt, n)
	if err != nil {
		h.b.Fatal(err)
	}
	const chunk = 1 << 20
	v := make([]float32, min(n, chunk))
	for i := range v {
		v[i] = float32(uint32(i)*2654435761%2001)/1000 - 1
	}
	for off := 0; off < n; off += chunk {
		m := min(chunk, n-off)
		var src any = v[:m]
		if dt == kernel.F16 || dt == kernel.BF16 {
			bits := make([]uint16, m)
			for i := range bits {
				bits[i] = kernel.FromF32(dt, v[i])
			}
			src = bits
		}
		if err := h.be.Upload(buf.Slice(off, m), src); err != nil {
			h.b.Fatal(err)
		}
	}
	return buf
}

func (h benchHarness) ints(v []int32) kernel.Buffer {
	h.b.Helper()
	buf, err := h.be.Alloc(kernel.I32, len(v))
	if err != nil {
		h.b.Fatal(err)
	}
	if err := h.be.Upload(buf, v); err != nil {
		h.b.Fatal(err)
	}
	return buf
}

func (h benchHarness) sync() {
	if err := h.be.Sync(); err != nil {
		h.b.Fatal(err)
	}
}

// MatMulShapes are the weight shapes (n×k) of BenchmarkMatMul: the
// TinyStories 15M/42M/110M projections and classifiers and a 1B/8B-class
// square.
var MatMulShapes = []struct{ N, K int }{
	{288, 288}, {768, 288}, {288, 768}, {512, 512}, {1376, 512}, {512, 1376},
	{768, 768}, {2048, 768}, {768, 2048}, {32000, 288}, {32000, 768}, {4096, 4096},
}

// MatMulTokens are the m (tokens) of BenchmarkMatMul: decode batches and
// a prefill chunk.
var MatMulTokens = []int{1, 4, 16, 256}

// BenchmarkMatMul runs MatMul/<backend>/<m>x<n>x<k>/<weight dtype>,
// reporting GFLOP/s and GB/s (weights + activations read and written).
// Rates per CPU-second are added when BenchOptions.CPUTime is set.
func BenchmarkMatMul(b *testing.B, be kernel.Backend, o BenchOptions) {
	b.Run(be.Name(), func(b *testing.B) {
		for _, sh := range MatMulShapes {
			for _, m := range MatMulTokens {
				for _, dt := range weightTypes {
					name := fmt.Sprintf("%dx%dx%d/%v", m, sh.N, sh.K, dt)
					b.Run(name, func(b *testing.B) { benchMatMul(b, be, o, m, sh.N, sh.K, dt) })
				}
			}
		}
	})
}

func benchMatMul(b *testing.B, be kernel.Backend, o BenchOptions, m, n, k int, dt kernel.DType) {
	act := int64(be.ComputeDType().Size())
	wBytes := int64(n) * int64(k) * int64(dt.Size())
	bytes := wBytes + act*int64(m*k+m*n)
	o.skip(b, bytes)
	h := benchHarness{b, be}
	x := h.buf(be.ComputeDType(), m*k)
	w := h.buf(dt, n*k)
	out := h.buf(be.ComputeDType(), m*n)
	defer func() { be.Free(x); be.Free(w); be.Free(out) }()
	h.sync()
	b.ResetTimer()
	r := o.start(b)
	for b.Loop() {
		if err := be.MatMul(out, x, w, m, n, k); err != nil {
			b.Fatal(err)
		}
	}
	h.sync()
	r.stop()
	r.report(2*float64(m)*float64(n)*float64(k)*float64(b.N)/1e9, "GFLOP")
	r.report(float64(bytes)*float64(b.N)/1e9, "GB")
}

// AttentionShape is a model's attention geometry.
type AttentionShape struct {
	Name                    string
	Heads, KVHeads, HeadDim int
}

// AttentionShapes: TinyStories 110M (MHA, head dim 64) and Llama-3 8B
// (GQA 4, head dim 128).
var AttentionShapes = []AttentionShape{
	{"stories110M", 12, 12, 64},
	{"llama8B", 32, 8, 128},
}

// BenchmarkPagedAttention runs PagedAttention/<backend>/<shape>/
// decode/b<batch>/ctx<context> and .../prefill/q<len>, block size 16,
// blocks in a shuffled order,
// reporting the KV bytes read per second (GB/s) and tokens/s.
func BenchmarkPagedAttention(b *testing.B, be kernel.Backend, o BenchOptions) {
	b.Run(be.Name(), func(b *testing.B) {
		for _, sh := range AttentionShapes {
			for _, batch := range []int{1, 16, 64} {
				for _, ctx := range []int{512, 4096} {
					name := fmt.Sprintf("%s/decode/b%d/ctx%d", sh.Name, batch, ctx)
					b.Run(name, func(b *testing.B) { benchAttention(b, be, o, sh, batch, ctx, 1) })
				}
			}
			for _, q := range []int{128, 512} {
				name := fmt.Sprintf("%s/prefill/q%d", sh.Name, q)
				b.Run(name, func(b *testing.B) { benchAttention(b, be, o, sh, 1, q, q) })
			}
		}
	})
}

func benchAttention(b *testing.B, be kernel.Backend, o BenchOptions, sh AttentionShape, batch, seqLen, qLen int) {
	const bs = 16
	esize := int64(be.ComputeDType().Size())
	blocksPerSeq := (seqLen + bs - 1) / bs
	numBlocks := batch*blocksPerSeq + 1
	cacheElems := numBlocks * sh.KVHeads * bs * sh.HeadDim
	kvRead := int64(batch) * int64(seqLen) * int64(sh.KVHeads*sh.HeadDim) * 2 * esize
	o.skip(b, 2*int64(cacheElems)*esize)
	h := benchHarness{b, be}
	kc, vc := h.buf(be.ComputeDType(), cacheElems), h.buf(be.ComputeDType(), cacheElems)
	tokens := batch * qLen
	q := h.buf(be.ComputeDType(), tokens*sh.Heads*sh.HeadDim)
	out := h.buf(be.ComputeDType(), tokens*sh.Heads*sh.HeadDim)
	qStart, seqLens := []int32{0}, []int32{}
	// Blocks in a fixed shuffled order, as a cache that has served many
	// requests hands them out.
	ids := rand.New(rand.NewPCG(1, 2)).Perm(numBlocks - 1)
	tables := make([]int32, batch*blocksPerSeq)
	for i := range batch {
		qStart = append(qStart, int32((i+1)*qLen))
		seqLens = append(seqLens, int32(seqLen))
		for j := range blocksPerSeq {
			tables[i*blocksPerSeq+j] = int32(1 + ids[i*blocksPerSeq+j])
		}
	}
	meta := &kernel.AttentionMeta{
		NumTokens: tokens, NumSeqs: batch,
		QueryStart: h.ints(qStart), SeqLens: h.ints(seqLens), BlockTables: h.ints(tables),
		MaxBlocksPerSeq: blocksPerSeq, MaxQueryLen: qLen, MaxSeqLen: seqLen, BlockSize: bs,
		NumHeads: sh.Heads, NumKVHeads: sh.KVHeads, HeadDim: sh.HeadDim, Scale: 0.125,
	}
	defer func() { be.Free(kc); be.Free(vc); be.Free(q); be.Free(out) }()
	h.sync()
	b.ResetTimer()
	r := o.start(b)
	for b.Loop() {
		if err := be.PagedAttention(out, q, kc, vc, meta); err != nil {
			b.Fatal(err)
		}
	}
	h.sync()
	r.stop()
	r.report(float64(kvRead)*float64(b.N)/1e9, "GB")
	r.report(float64(tokens)*float64(b.N), "tokens")
}

// BenchmarkSample runs Sample/<backend>/<mode>/b<batch>/v<vocab>,
// reporting rows sampled per second (tokens/s).
func BenchmarkSample(b *testing.B, be kernel.Backend, o BenchOptions) {
	modes := []struct {
		name string
		p    kernel.SampleParams
	}{
		{"greedy", kernel.SampleParams{TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1}},
		{"topk50-topp0.9", kernel.SampleParams{Temperature: 0.8, TopK: 50, TopP: 0.9, RepetitionPenalty: 1, NumLogprobs: -1}},
		{"topp0.9-logprobs5", kernel.SampleParams{Temperature: 1, TopP: 0.9, RepetitionPenalty: 1, NumLogprobs: 5}},
	}
	b.Run(be.Name(), func(b *testing.B) {
		for _, mode := range modes {
			for _, batch := range []int{1, 32, 128} {
				for _, vocab := range []int{32000, 128256} {
					name := fmt.Sprintf("%s/b%d/v%d", mode.name, batch, vocab)
					b.Run(name, func(b *testing.B) { benchSample(b, be, o, mode.p, batch, vocab) })
				}
			}
		}
	})
}

func benchSample(b *testing.B, be kernel.Backend, o BenchOptions, p kernel.SampleParams, batch, vocab int) {
	o.skip(b, int64(batch)*int64(vocab)*4)
	h := benchHarness{b, be}
	logits := h.buf(kernel.F32, batch*vocab)
	defer be.Free(logits)
	sb := &kernel.SampleBatch{}
	for i := range batch {
		p.Seed, p.Offset = uint64(i), uint64(i)
		sb.Rows = append(sb.Rows, p)
	}
	res := &kernel.SampleResult{}
	h.sync()
	b.ResetTimer()
	r := o.start(b)
	for b.Loop() {
		if err := be.Sample(logits, vocab, sb, res); err != nil {
			b.Fatal(err)
		}
	}
	h.sync()
	r.stop()
	r.report(float64(batch)*float64(b.N), "tokens")
}
