//go:build cuda

package cuda

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/kernel/kerneltest"
	"github.com/vserve/vserve/runtime/model"
)

// The benchmarks share their names with the CPU backend's
// (BenchmarkPagedAttention/cuda/..., BenchmarkSample/cuda/...): the cases
// come from kerneltest. They run on a GPU machine (bench/gpu/check.sh).

func openBench(b *testing.B) *Backend {
	b.Helper()
	cfg, err := ConfigFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	be, err := New(kernel.Options{}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	return be
}

func BenchmarkMatMul(b *testing.B) {
	kerneltest.BenchmarkMatMul(b, openBench(b), kerneltest.BenchOptions{})
}

func BenchmarkPagedAttention(b *testing.B) {
	kerneltest.BenchmarkPagedAttention(b, openBench(b), kerneltest.BenchOptions{})
}

func BenchmarkSample(b *testing.B) {
	kerneltest.BenchmarkSample(b, openBench(b), kerneltest.BenchOptions{})
}

// BenchmarkReadBandwidth streams 4 GiB (80× the H200's L2) through a
// read-only kernel: the HBM read ceiling decode attention is held against.
func BenchmarkReadBandwidth(b *testing.B) {
	be := openBench(b)
	b.Run(Name, func(b *testing.B) {
		const n = 4 << 30
		buf, err := be.allocBuf(kernel.I32, n/4)
		if err != nil {
			b.Fatal(err)
		}
		defer be.Free(buf)
		sink, err := be.allocBuf(kernel.I32, 1024)
		if err != nil {
			b.Fatal(err)
		}
		defer be.Free(sink)
		run := func() {
			err := be.launch(be.fn.readProbe, dim3{be.numSMs * 8, 1, 1}, dim3{512, 1, 1}, 0,
				bufArg(buf), i64Arg(n/16), bufArg(sink))
			if err != nil {
				b.Fatal(err)
			}
		}
		run()
		if err := be.Sync(); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			run()
		}
		if err := be.Sync(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
}

// BenchmarkGemmBF16 times a square bf16 GEMM through MatMul: the tensor
// core ceiling.
func BenchmarkGemmBF16(b *testing.B) {
	be := openBench(b)
	for _, n := range []int{4096, 8192} {
		b.Run(fmt.Sprintf("%s/%d", Name, n), func(b *testing.B) {
			x, err := be.allocBuf(kernel.BF16, n*n)
			if err != nil {
				b.Fatal(err)
			}
			w, err := be.allocBuf(kernel.BF16, n*n)
			if err != nil {
				b.Fatal(err)
			}
			out, err := be.allocBuf(kernel.BF16, n*n)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { be.Free(x); be.Free(w); be.Free(out) }()
			if err := be.MatMul(out, x, w, n, n, n); err != nil {
				b.Fatal(err)
			}
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := be.MatMul(out, x, w, n, n, n); err != nil {
					b.Fatal(err)
				}
			}
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(2*float64(n)*float64(n)*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e12, "TFLOP/s")
		})
	}
}

// decodeSpec is Llama-3-8B's layer shape; VSERVE_BENCH_LAYERS layers
// (default 2) keep the random checkpoint small.
func decodeSpec() model.Spec {
	layers := 2
	if v, err := strconv.Atoi(os.Getenv("VSERVE_BENCH_LAYERS")); err == nil && v > 0 {
		layers = v
	}
	return model.Spec{Name: "llama8B-shape", Hidden: 4096, Intermediate: 14336, Layers: layers, Heads: 32, KVHeads: 8,
		Vocab: 128256, MaxPos: 8192, Tied: false, DType: "bf16", RopeTheta: 500000}
}

// BenchmarkDecodeStep times one full decode step (forward over every
// layer, lm_head, greedy sampling) of a random-weight model with
// Llama-3-8B's layer shape, at batch 1/16/64 and context 512/4096, and
// reports the step time and tokens/s.
func BenchmarkDecodeStep(b *testing.B) {
	be := openBench(b)
	spec := decodeSpec()
	dir := b.TempDir()
	if err := model.Generate(dir, spec, 1); err != nil {
		b.Fatal(err)
	}
	m, err := model.Load(dir, be, model.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	const bs = 16
	for _, batch := range []int{1, 16, 64} {
		for _, ctx := range []int{512, 4096} {
			b.Run(fmt.Sprintf("%s/%s/b%d/ctx%d", Name, spec.Name, batch, ctx), func(b *testing.B) {
				benchDecode(b, be, m, batch, ctx, bs)
			})
		}
	}
}

func benchDecode(b *testing.B, be *Backend, m *model.Model, batch, ctx, bs int) {
	per := (ctx + 1 + bs - 1) / bs
	kv, err := m.NewKVCache(1+batch*per, bs)
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Free()
	ws, err := m.NewWorkspace(batch, batch)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Free()
	ints := func(v []int32) kernel.Buffer {
		buf, err := be.Alloc(kernel.I32, len(v))
		if err != nil {
			b.Fatal(err)
		}
		if err := be.Upload(buf, v); err != nil {
			b.Fatal(err)
		}
		return buf
	}
	var ids, pos, slots, rows, qs, lens, tables []int32
	qs = append(qs, 0)
	for i := range batch {
		ids = append(ids, int32(i+1))
		pos = append(pos, int32(ctx))
		slots = append(slots, int32((1+i*per)*bs+ctx))
		rows = append(rows, int32(i))
		qs = append(qs, int32(i+1))
		lens = append(lens, int32(ctx+1))
		for j := range per {
			tables = append(tables, int32(1+i*per+j))
		}
	}
	bt := &model.Batch{NumTokens: batch, TokenIDs: ints(ids), Positions: ints(pos), SlotMapping: ints(slots),
		NumLogits: batch, LogitRows: ints(rows)}
	bt.Attn = kernel.AttentionMeta{NumSeqs: batch, QueryStart: ints(qs), SeqLens: ints(lens), BlockTables: ints(tables),
		MaxBlocksPerSeq: per, MaxQueryLen: 1, MaxSeqLen: ctx + 1}
	sb := &kernel.SampleBatch{}
	for range batch {
		sb.Rows = append(sb.Rows, kernel.SampleParams{TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1})
	}
	res := &kernel.SampleResult{}
	step := func() {
		logits, err := m.Forward(ws, kv, bt)
		if err != nil {
			b.Fatal(err)
		}
		if err := be.Sample(logits, m.Config.VocabSize, sb, res); err != nil {
			b.Fatal(err)
		}
	}
	step()
	b.ResetTimer()
	for b.Loop() {
		step()
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(sec*1e3, "ms/step")
	b.ReportMetric(float64(batch)/sec, "tokens/s")
}
