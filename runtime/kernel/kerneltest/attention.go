package kerneltest

import (
	"fmt"
	"math"

	"github.com/vserve/vserve/runtime/kernel"
)

func testReshapeAndCache(h *harness) {
	for _, sh := range []struct{ kvHeads, headDim, blockSize, blocks, tokens int }{
		{1, 8, 16, 3, 5}, {2, 64, 16, 5, 9}, {4, 128, 32, 4, 20},
	} {
		name := fmt.Sprintf("%dkv/%dd/bs%d", sh.kvHeads, sh.headDim, sh.blockSize)
		row := sh.kvHeads * sh.headDim
		size := sh.blocks * sh.blockSize * row
		kc, kInit := h.act(h.normals(size, 1))
		vc, vInit := h.act(h.normals(size, 1))
		key, kv := h.act(h.normals(sh.tokens*row, 1))
		val, vv := h.act(h.normals(sh.tokens*row, 1))
		perm := h.rng.Perm(sh.blocks * sh.blockSize)
		slots := make([]int32, sh.tokens)
		for t := range slots {
			slots[t] = int32(perm[t])
		}
		slots[1], slots[sh.tokens-1] = -1, -1
		h.ok("ReshapeAndCache "+name, h.be.ReshapeAndCache(key, val, kc, vc, h.ints(slots),
			sh.tokens, sh.kvHeads, sh.headDim, sh.blockSize))
		wantK, wantV := f64s(kInit), f64s(vInit)
		for t, s := range slots {
			if s < 0 {
				continue
			}
			b, off := int(s)/sh.blockSize, int(s)%sh.blockSize
			for hh := range sh.kvHeads {
				dst := ((b*sh.kvHeads+hh)*sh.blockSize + off) * sh.headDim
				src := (t*sh.kvHeads + hh) * sh.headDim
				copy(wantK[dst:dst+sh.headDim], f64s(kv[src:src+sh.headDim]))
				copy(wantV[dst:dst+sh.headDim], f64s(vv[src:src+sh.headDim]))
			}
		}
		h.check("ReshapeAndCache k "+name, h.read(kc), wantK, 0)
		h.check("ReshapeAndCache v "+name, h.read(vc), wantV, 0)
	}
}

// seqShape is one sequence of an attention batch: ctx cached positions
// before its q query tokens.
type seqShape struct{ ctx, q int }

type attnCase struct {
	heads, kvHeads, headDim, blockSize int
	seqs                               []seqShape
}

var attnCases = []attnCase{
	{4, 4, 64, 16, []seqShape{{0, 1}, {15, 1}, {16, 1}, {100, 1}}},           // decodes, MHA
	{8, 2, 128, 16, []seqShape{{0, 37}, {0, 1}}},                             // prefill, GQA 4
	{8, 1, 8, 32, []seqShape{{20, 13}, {0, 5}, {70, 1}, {33, 1}}},            // mixed, GQA 8
	{6, 3, 64, 16, []seqShape{{31, 1}, {17, 16}, {0, 3}, {47, 2}, {64, 17}}}, // mixed, GQA 2
	{16, 2, 64, 16, []seqShape{{40, 1}, {0, 9}, {23, 7}}},                    // GQA 8, head dim 64
	{4, 1, 128, 32, []seqShape{{50, 1}, {10, 20}, {95, 1}}},                  // GQA 4, block 32
}

// attnScene is a random batch laid out in paged caches.
type attnScene struct {
	c          attnCase
	meta       kernel.AttentionMeta
	q          kernel.Buffer
	qv         []float32
	kc, vc     kernel.Buffer
	keys, vals [][]float32 // per sequence: [position][kvHead][headDim]
}

// newAttnScene allocates blocks in shuffled order (holes; block 0 is the
// null block), fills valid positions with random keys and values and every
// other cache slot with NaN.
func newAttnScene(h *harness, c attnCase) *attnScene {
	sc := &attnScene{c: c}
	bs, row := c.blockSize, c.kvHeads*c.headDim
	used, maxBlocks, tokens, maxQ, maxL := 0, 0, 0, 0, 0
	for _, s := range c.seqs {
		l := s.ctx + s.q
		used += (l + bs - 1) / bs
		maxBlocks = max(maxBlocks, (l+bs-1)/bs)
		tokens += s.q
		maxQ, maxL = max(maxQ, s.q), max(maxL, l)
	}
	maxBlocks++ // a zero (null) entry past every table's end
	numBlocks := used + 4
	ids := h.rng.Perm(numBlocks - 1)
	nan := float32(math.NaN())
	kAll := make([]float32, numBlocks*bs*row)
	vAll := make([]float32, len(kAll))
	for i := range kAll {
		kAll[i], vAll[i] = nan, nan
	}
	tables := make([]int32, len(c.seqs)*maxBlocks)
	qStart := []int32{0}
	var seqLens []int32
	next := 0
	for i, s := range c.seqs {
		l := s.ctx + s.q
		keys := h.normals(l*row, 1)
		vals := h.normals(l*row, 1)
		for b := 0; b*bs < l; b++ {
			tables[i*maxBlocks+b] = int32(ids[next] + 1)
			next++
		}
		for p := range l {
			blk := int(tables[i*maxBlocks+p/bs])
			for hh := range c.kvHeads {
				dst := ((blk*c.kvHeads+hh)*bs + p%bs) * c.headDim
				src := (p*c.kvHeads + hh) * c.headDim
				copy(kAll[dst:dst+c.headDim], keys[src:src+c.headDim])
				copy(vAll[dst:dst+c.headDim], vals[src:src+c.headDim])
			}
		}
		sc.keys = append(sc.keys, round(h.be.ComputeDType(), keys))
		sc.vals = append(sc.vals, round(h.be.ComputeDType(), vals))
		qStart = append(qStart, qStart[len(qStart)-1]+int32(s.q))
		seqLens = append(seqLens, int32(l))
	}
	sc.kc, _ = h.act(kAll)
	sc.vc, _ = h.act(vAll)
	sc.q, sc.qv = h.act(h.normals(tokens*c.heads*c.headDim, 1))
	sc.meta = kernel.AttentionMeta{
		NumTokens: tokens, NumSeqs: len(c.seqs),
		QueryStart: h.ints(qStart), SeqLens: h.ints(seqLens), BlockTables: h.ints(tables),
		MaxBlocksPerSeq: maxBlocks, MaxQueryLen: maxQ, MaxSeqLen: maxL, BlockSize: bs,
		NumHeads: c.heads, NumKVHeads: c.kvHeads, HeadDim: c.headDim,
		Scale: float32(1 / math.Sqrt(float64(c.headDim))),
	}
	return sc
}

// reference computes causal attention in float64.
func (sc *attnScene) reference() []float64 {
	c := sc.c
	hd, row := c.headDim, c.kvHeads*c.headDim
	out := make([]float64, sc.meta.NumTokens*c.heads*hd)
	t := 0
	for i, s := range c.seqs {
		for j := range s.q {
			n := s.ctx + j + 1
			for hh := range c.heads {
				kvh := hh / (c.heads / c.kvHeads)
				q := sc.qv[(t*c.heads+hh)*hd : (t*c.heads+hh+1)*hd]
				scores := make([]float64, n)
				mx := math.Inf(-1)
				for p := range n {
					k := sc.keys[i][p*row+kvh*hd : p*row+kvh*hd+hd]
					var d float64
					for e := range hd {
						d += float64(q[e]) * float64(k[e])
					}
					scores[p] = d * float64(sc.meta.Scale)
					mx = max(mx, scores[p])
				}
				var sum float64
				for p := range scores {
					scores[p] = math.Exp(scores[p] - mx)
					sum += scores[p]
				}
				o := out[(t*c.heads+hh)*hd : (t*c.heads+hh+1)*hd]
				for p := range n {
					v := sc.vals[i][p*row+kvh*hd : p*row+kvh*hd+hd]
					for e := range hd {
						o[e] += scores[p] / sum * float64(v[e])
					}
				}
			}
			t++
		}
	}
	return out
}

func testPagedAttention(h *harness) {
	for _, c := range attnCases {
		name := fmt.Sprintf("%dh/%dkv/%dd/bs%d/%dseqs", c.heads, c.kvHeads, c.headDim, c.blockSize, len(c.seqs))
		sc := newAttnScene(h, c)
		out := h.poisoned(sc.meta.NumTokens * c.heads * c.headDim)
		h.ok("PagedAttention "+name, h.be.PagedAttention(out, sc.q, sc.kc, sc.vc, &sc.meta))
		h.check("PagedAttention "+name, h.read(out), sc.reference(), h.tol(10))
	}
}
