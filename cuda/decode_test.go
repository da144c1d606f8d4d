//go:build cuda || cudaemu

package cuda

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/vserve/vserve/runtime/kernel"
)

// TestDecodePath runs decode batches (one query token per sequence)
// through PagedAttention, checks that the plan takes the decode path, and
// compares the output with a float64 reference. The caches are bf16 or
// f16; block 0 (the null block, padding in the block tables) and every
// slot past a sequence's end hold NaN. With -tags cudaemu the kernels run
// on the CPU (4 emulated SMs: few partitions; the long case is skipped,
// too slow there); on a GPU (bench/gpu/check.sh) the plans use its SMs.
func TestDecodePath(t *testing.T) {
	tests := []struct {
		name                               string
		dt                                 kernel.DType
		heads, kvHeads, headDim, blockSize int
		lens                               []int
		minParts                           int
		long                               bool
	}{
		{"llama-8B shape bf16", kernel.BF16, 32, 8, 128, 16, []int{300, 129}, 3, false},
		{"GQA 8 head dim 64 f16 block 32", kernel.F16, 16, 2, 64, 32, []int{333, 40, 2, 97}, 6, false},
		{"MHA head dim 64 bf16", kernel.BF16, 4, 4, 64, 16, []int{60, 17}, 1, false},
		{"llama-8B shape bf16 long", kernel.BF16, 32, 8, 128, 16, []int{4095, 1, 2000, 777, 4096, 31, 1500, 64}, 4, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.long && Name == "cuda-emu" {
				t.Skip("long contexts: GPU only")
			}
			cfg, err := ConfigFromEnv()
			if err != nil {
				t.Fatal(err)
			}
			cfg.ComputeDType = tc.dt
			be, err := New(kernel.Options{}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			checkDecode(t, be, tc.dt, tc.heads, tc.kvHeads, tc.headDim, tc.blockSize, tc.lens, tc.minParts)
		})
	}
}

func checkDecode(t *testing.T, be *Backend, dt kernel.DType, heads, kvHeads, hd, bs int, lens []int, minParts int) {
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
	if !ok || p.numParts < minParts {
		t.Fatalf("plan %+v (decode path %v), want at least %d partitions", p, ok, minParts)
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
