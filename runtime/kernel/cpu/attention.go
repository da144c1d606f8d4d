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

// attnScratch is one worker's temporary storage, per query head of a
// group: scores of one block, the running maximum and sum of the online
// softmax, and the output accumulator.
type attnScratch struct {
	scores  []float32 // [group][blockSize]
	acc     []float32 // [group][headDim]
	runMax  []float32
	sum     []float32
	tileRes [4 * maxWide]float32
}

func newAttnScratch(m *kernel.AttentionMeta) *attnScratch {
	g := m.NumHeads / m.NumKVHeads
	return &attnScratch{
		scores: make([]float32, g*m.BlockSize),
		acc:    make([]float32, g*m.HeadDim),
		runMax: make([]float32, g),
		sum:    make([]float32, g),
	}
}

// unit computes every query row of sequence i for the query heads of KV
// head kvh.
func (ab *attnBatch) unit(i, kvh int, s *attnScratch) {
	m := ab.m
	qs, qe, l := int(ab.qStart[i]), int(ab.qStart[i+1]), int(ab.seqLens[i])
	ctx := l - (qe - qs)
	g := m.NumHeads / m.NumKVHeads
	table := ab.blockTables[i*m.MaxBlocksPerSeq : (i+1)*m.MaxBlocksPerSeq]
	span := g * m.HeadDim
	for row := qs; row < qe; row++ {
		off := (row*m.NumHeads + kvh*g) * m.HeadDim
		ab.attendRow(ab.out[off:off+span], ab.q[off:off+span], table, kvh, ctx+row-qs+1, s)
	}
}

// attendRow is online-softmax attention of the g query vectors of one
// token (q holds them back to back) over the first n positions of a block
// table, one block at a time: the block's scores, a rescale of the running
// sums of the heads whose maximum grew, then the weighted values.
func (ab *attnBatch) attendRow(out, q []float32, table []int32, kvh, n int, s *attnScratch) {
	m := ab.m
	hd, bs := m.HeadDim, m.BlockSize
	g := len(q) / hd
	clear(s.acc)
	for h := range g {
		s.runMax[h] = float32(math.Inf(-1))
		s.sum[h] = 0
	}
	for blk := 0; blk*bs < n; blk++ {
		cnt := min(bs, n-blk*bs)
		base := ((int(table[blk])*m.NumKVHeads + kvh) * bs) * hd
		keys := ab.kc[base : base+cnt*hd]
		vals := ab.vc[base : base+cnt*hd]
		ab.blockScores(s, q, keys, cnt)
		for h := range g {
			sc := s.scores[h*bs : h*bs+cnt]
			acc := s.acc[h*hd : h*hd+hd]
			blockMax := float32(math.Inf(-1))
			for p := range sc {
				sc[p] *= m.Scale
				blockMax = max(blockMax, sc[p])
			}
			if blockMax > s.runMax[h] {
				if s.sum[h] != 0 {
					c := expf(s.runMax[h] - blockMax)
					scaleInPlace(acc, c)
					s.sum[h] *= c
				}
				s.runMax[h] = blockMax
			}
			var sum float32
			for p, v := range sc {
				e := expf(v - s.runMax[h])
				sc[p] = e
				sum += e
			}
			s.sum[h] += sum
			accumRows(acc, vals, sc, hd)
		}
	}
	for h := range g {
		inv := 1 / s.sum[h]
		acc := s.acc[h*hd : h*hd+hd]
		o := out[h*hd : h*hd+hd]
		for i, v := range acc {
			o[i] = v * inv
		}
	}
}

// blockScores writes the unscaled dot products of the g query vectors with
// the cnt key rows of one block into s.scores[h*blockSize+p], four key rows
// at a time through the matmul tiles when the head dim suits them.
func (ab *attnBatch) blockScores(s *attnScratch, q, keys []float32, cnt int) {
	hd, bs := ab.m.HeadDim, ab.m.BlockSize
	g := len(q) / hd
	p := 0
	if hd%simd.kStep == 0 {
		t1 := simd.tiles[0][1]
		for ; p+4 <= cnt; p += 4 {
			kp := unsafe.Pointer(&keys[p*hd])
			for h := range g {
				t1(kp, uintptr(hd), &q[h*hd], uintptr(hd), uintptr(hd), &s.tileRes[0])
				copy(s.scores[h*bs+p:h*bs+p+4], s.tileRes[:4])
			}
		}
	}
	for ; p < cnt; p++ {
		k := keys[p*hd : p*hd+hd]
		for h := range g {
			s.scores[h*bs+p] = dot(q[h*hd:h*hd+hd], k)
		}
	}
}
