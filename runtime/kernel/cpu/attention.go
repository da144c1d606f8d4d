package cpu

import (
	"fmt"
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/vserve/vserve/runtime/kernel"
)

// ReshapeAndCache stores key and value rows [numTokens×numKVHeads×headDim]
// into the F32 caches [numBlocks][numKVHeads][blockSize][headDim] at the
// given slots; slot -1 is skipped.
func (be *Backend) ReshapeAndCache(key, value, kCache, vCache, slots kernel.Buffer, numTokens, numKVHeads, headDim, blockSize int) error {
	if numKVHeads <= 0 || headDim <= 0 || blockSize <= 0 {
		return fmt.Errorf("cpu: ReshapeAndCache with %d kv heads, head dim %d, block size %d", numKVHeads, headDim, blockSize)
	}
	row := numKVHeads * headDim
	ks, err := f32s(key, numTokens*row, "ReshapeAndCache key")
	if err != nil {
		return err
	}
	vs, err := f32s(value, numTokens*row, "ReshapeAndCache value")
	if err != nil {
		return err
	}
	kc, err := f32All(kCache, "ReshapeAndCache kCache")
	if err != nil {
		return err
	}
	vc, err := f32All(vCache, "ReshapeAndCache vCache")
	if err != nil {
		return err
	}
	if len(kc) != len(vc) {
		return fmt.Errorf("cpu: ReshapeAndCache caches differ in size (%d and %d)", len(kc), len(vc))
	}
	sl, err := i32s(slots, numTokens, "ReshapeAndCache slots")
	if err != nil {
		return err
	}
	numSlots := len(kc) / row
	for t, s := range sl {
		if s == -1 {
			continue
		}
		if s < 0 || int(s) >= numSlots {
			return fmt.Errorf("cpu: ReshapeAndCache slot %d of token %d outside the cache's %d slots", s, t, numSlots)
		}
		b, off := int(s)/blockSize, int(s)%blockSize
		for h := range numKVHeads {
			dst := ((b*numKVHeads+h)*blockSize + off) * headDim
			src := (t*numKVHeads + h) * headDim
			copy(kc[dst:dst+headDim], ks[src:src+headDim])
			copy(vc[dst:dst+headDim], vs[src:src+headDim])
		}
	}
	return nil
}

// attnBatch is one validated PagedAttention call on host slices.
type attnBatch struct {
	m               *kernel.AttentionMeta
	out, q, kc, vc  []float32
	qStart, seqLens []int32
	blockTables     []int32
}

// PagedAttention computes causal attention for a batch mixing prefill
// chunks and decodes: query row j of sequence i (query length q, sequence
// length L) attends cached positions 0..L-q+j. Work is split over
// (sequence, KV head) pairs; each pair computes the query heads that share
// that KV head together, so every key and value row is loaded once per
// query row.
func (be *Backend) PagedAttention(out, q, kCache, vCache kernel.Buffer, m *kernel.AttentionMeta) error {
	ab, err := newAttnBatch(out, q, kCache, vCache, m)
	if err != nil {
		return err
	}
	units := m.NumSeqs * m.NumKVHeads
	var next atomic.Int64
	be.pool.run(units, func(_, _ int) {
		s := newAttnScratch(m)
		for {
			u := int(next.Add(1)) - 1
			if u >= units {
				return
			}
			ab.unit(u/m.NumKVHeads, u%m.NumKVHeads, s)
		}
	})
	return nil
}

func newAttnBatch(out, q, kCache, vCache kernel.Buffer, m *kernel.AttentionMeta) (*attnBatch, error) {
	if m == nil {
		return nil, fmt.Errorf("cpu: PagedAttention without metadata")
	}
	if m.NumHeads <= 0 || m.NumKVHeads <= 0 || m.NumHeads%m.NumKVHeads != 0 || m.HeadDim <= 0 || m.BlockSize <= 0 {
		return nil, fmt.Errorf("cpu: PagedAttention with %d heads, %d kv heads, head dim %d, block size %d",
			m.NumHeads, m.NumKVHeads, m.HeadDim, m.BlockSize)
	}
	if m.NumTokens < 0 || m.NumSeqs < 0 || m.MaxBlocksPerSeq < 0 {
		return nil, fmt.Errorf("cpu: PagedAttention with %d tokens, %d sequences, %d blocks per sequence",
			m.NumTokens, m.NumSeqs, m.MaxBlocksPerSeq)
	}
	if !(m.Scale > 0) || math.IsInf(float64(m.Scale), 1) {
		return nil, fmt.Errorf("cpu: PagedAttention scale %v, want a positive finite number", m.Scale)
	}
	ab := &attnBatch{m: m}
	var err error
	n := m.NumTokens * m.NumHeads * m.HeadDim
	if ab.out, err = f32s(out, n, "PagedAttention out"); err != nil {
		return nil, err
	}
	if ab.q, err = f32s(q, n, "PagedAttention q"); err != nil {
		return nil, err
	}
	if ab.kc, err = f32All(kCache, "PagedAttention kCache"); err != nil {
		return nil, err
	}
	if ab.vc, err = f32All(vCache, "PagedAttention vCache"); err != nil {
		return nil, err
	}
	if ab.qStart, err = i32s(m.QueryStart, m.NumSeqs+1, "PagedAttention QueryStart"); err != nil {
		return nil, err
	}
	if ab.seqLens, err = i32s(m.SeqLens, m.NumSeqs, "PagedAttention SeqLens"); err != nil {
		return nil, err
	}
	if ab.blockTables, err = i32s(m.BlockTables, m.NumSeqs*m.MaxBlocksPerSeq, "PagedAttention BlockTables"); err != nil {
		return nil, err
	}
	return ab, ab.validate()
}

// validate checks every sequence's rows, length and used block ids, so
// the parallel part cannot go out of range.
func (ab *attnBatch) validate() error {
	m := ab.m
	blockElems := m.NumKVHeads * m.BlockSize * m.HeadDim
	numBlocks := min(len(ab.kc), len(ab.vc)) / blockElems
	if ab.qStart[0] < 0 {
		return fmt.Errorf("cpu: PagedAttention QueryStart[0] = %d", ab.qStart[0])
	}
	for i := range m.NumSeqs {
		qs, qe, l := int(ab.qStart[i]), int(ab.qStart[i+1]), int(ab.seqLens[i])
		if qe < qs || qe > m.NumTokens {
			return fmt.Errorf("cpu: PagedAttention sequence %d has query rows [%d, %d) of %d tokens", i, qs, qe, m.NumTokens)
		}
		if l < qe-qs {
			return fmt.Errorf("cpu: PagedAttention sequence %d has length %d < its %d query tokens", i, l, qe-qs)
		}
		used := (l + m.BlockSize - 1) / m.BlockSize
		if used > m.MaxBlocksPerSeq {
			return fmt.Errorf("cpu: PagedAttention sequence %d of length %d needs %d blocks > MaxBlocksPerSeq %d", i, l, used, m.MaxBlocksPerSeq)
		}
		for _, b := range ab.blockTables[i*m.MaxBlocksPerSeq : i*m.MaxBlocksPerSeq+used] {
			if b < 0 || int(b) >= numBlocks {
				return fmt.Errorf("cpu: PagedAttention sequence %d uses block %d outside the cache's %d blocks", i, b, numBlocks)
			}
		}
	}
	return nil
}

// attnScratch is one worker's temporary storage for up to maxWide query
// rows of one head: scores of one block, the running maximum and sum of
// the online softmax, and the output accumulators.
type attnScratch struct {
	scores []float32 // [maxWide][blockSize]
	acc    []float32 // [maxWide][headDim]
	runMax [maxWide]float32
	sum    [maxWide]float32
}

func newAttnScratch(m *kernel.AttentionMeta) *attnScratch {
	return &attnScratch{
		scores: make([]float32, maxWide*m.BlockSize),
		acc:    make([]float32, maxWide*m.HeadDim),
	}
}

// unit computes every query row of sequence i for the query heads of KV
// head kvh, up to simd.wide query vectors at a time, so that each key row
// loaded feeds several of them: the heads of a GQA group for a decode,
// consecutive rows of one head for a prefill chunk.
func (ab *attnBatch) unit(i, kvh int, s *attnScratch) {
	m := ab.m
	qs, qe, l := int(ab.qStart[i]), int(ab.qStart[i+1]), int(ab.seqLens[i])
	ctx := l - (qe - qs)
	g := m.NumHeads / m.NumKVHeads
	hd, rowStride := m.HeadDim, m.NumHeads*m.HeadDim
	table := ab.blockTables[i*m.MaxBlocksPerSeq : (i+1)*m.MaxBlocksPerSeq]
	wide := 1
	if hd%simd.kStep == 0 {
		wide = simd.wide
	}
	if qe-qs == 1 {
		for h := kvh * g; h < (kvh+1)*g; h += wide {
			n := min(wide, (kvh+1)*g-h)
			ab.attend(qs*rowStride+h*hd, hd, n, kvh, table, l, 0, s)
		}
		return
	}
	for h := kvh * g; h < (kvh+1)*g; h++ {
		for r0 := qs; r0 < qe; r0 += wide {
			n := min(wide, qe-r0)
			ab.attend(r0*rowStride+h*hd, rowStride, n, kvh, table, ctx+r0-qs+1, 1, s)
		}
	}
}

// attend is online-softmax attention of n query vectors, vector t at
// offset qOff+t·qStep of q (and of out), attending the first n0+t·nStep
// positions of the block table; one block at a time: the block's scores,
// a rescale of the running sums whose maximum grew, the weighted values.
func (ab *attnBatch) attend(qOff, qStep, n, kvh int, table []int32, n0, nStep int, s *attnScratch) {
	m := ab.m
	hd, bs := m.HeadDim, m.BlockSize
	clear(s.acc[:n*hd])
	for t := range n {
		s.runMax[t] = float32(math.Inf(-1))
		s.sum[t] = 0
	}
	nMax := n0 + (n-1)*nStep
	for blk := 0; blk*bs < nMax; blk++ {
		cnt := min(bs, nMax-blk*bs)
		base := ((int(table[blk])*m.NumKVHeads + kvh) * bs) * hd
		keys := ab.kc[base : base+cnt*hd]
		vals := ab.vc[base : base+cnt*hd]
		if next := blk + 1; next*bs < nMax {
			// Blocks are scattered, so the hardware prefetchers cannot
			// guess the next one; the table can.
			nb := ((int(table[next])*m.NumKVHeads + kvh) * bs) * hd
			nbytes := uintptr(4 * min(bs, nMax-next*bs) * hd)
			simd.prefetch(unsafe.Pointer(&ab.kc[nb]), nbytes)
			simd.prefetch(unsafe.Pointer(&ab.vc[nb]), nbytes)
		}
		ab.blockScores(s, qOff, qStep, n, keys, cnt)
		for t := range n {
			valid := min(cnt, n0+t*nStep-blk*bs) // causal limit of vector t
			if valid <= 0 {
				continue
			}
			sc := s.scores[t*bs : t*bs+valid]
			acc := s.acc[t*hd : t*hd+hd]
			blockMax := m.Scale * simd.max(sc) // Scale > 0 (validated)
			if blockMax > s.runMax[t] {
				if s.sum[t] != 0 {
					c := expf(s.runMax[t] - blockMax)
					scaleInPlace(acc, c)
					s.sum[t] *= c
				}
				s.runMax[t] = blockMax
			}
			s.sum[t] += simd.expScaled(sc, m.Scale, s.runMax[t])
			accumRows(acc, vals, sc, hd)
		}
	}
	for t := range n {
		inv := 1 / s.sum[t]
		off := qOff + t*qStep
		o := ab.out[off : off+hd]
		for i, v := range s.acc[t*hd : t*hd+hd] {
			o[i] = v * inv
		}
	}
}

// blockScores writes the unscaled dot products of the n query vectors at
// qOff, qOff+qStep, ... with the cnt key rows of one block into
// s.scores[t*blockSize+p], four key rows by all n vectors at a time
// through the matmul tiles when the head dim suits them.
func (ab *attnBatch) blockScores(s *attnScratch, qOff, qStep, n int, keys []float32, cnt int) {
	hd, bs := ab.m.HeadDim, ab.m.BlockSize
	p := 0
	if hd%simd.kStep == 0 {
		tile := simd.tiles[0][n]
		for ; p+4 <= cnt; p += 4 {
			tile(unsafe.Pointer(&keys[p*hd]), uintptr(hd), &ab.q[qOff], uintptr(qStep), uintptr(hd), &s.scores[p], uintptr(bs))
		}
	}
	for ; p < cnt; p++ {
		k := keys[p*hd : p*hd+hd]
		for t := range n {
			off := qOff + t*qStep
			s.scores[t*bs+p] = dot(ab.q[off:off+hd], k)
		}
	}
}
