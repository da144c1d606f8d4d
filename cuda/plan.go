package cuda

import (
	"errors"
	"fmt"
	"math"

	"github.com/vserve/vserve/runtime/kernel"
)

// fitsInt32 checks the sizes passed as int kernel parameters.
func fitsInt32(op string, vals ...int) error {
	for _, v := range vals {
		if v < 0 || v > math.MaxInt32 {
			return fmt.Errorf("cuda: %s: size %d out of range", op, v)
		}
	}
	return nil
}

// attnSmemLimit is the dynamic shared memory a CTA may use without opting in.
const attnSmemLimit = 48 << 10

// maxGridY is the largest gridDim.y (and z) a launch may have; attention
// puts sequences × KV heads there.
const maxGridY = 65535

// checkAttentionShape reports a model and scheduler shape for which
// PagedAttention could not run some batch the scheduler may build: more
// sequences × KV heads than a grid holds, or a head dim and block size
// whose one-row tile needs more shared memory than a CTA may use.
func checkAttentionShape(numKVHeads, headDim, blockSize, maxNumSeqs int) error {
	if n := maxNumSeqs * numKVHeads; n > maxGridY {
		return fmt.Errorf("cuda: --max-num-seqs %d × %d KV heads = %d exceeds the attention grid's %d: lower --max-num-seqs to %d",
			maxNumSeqs, numKVHeads, n, maxGridY, maxGridY/numKVHeads)
	}
	if smem := attnSmem(1, blockSize, headDim); smem > attnSmemLimit {
		return fmt.Errorf("cuda: head dim %d with --block-size %d needs %d bytes of shared memory per attention CTA (limit %d): use a smaller --block-size",
			headDim, blockSize, smem, attnSmemLimit)
	}
	return nil
}

// attnSmem is the shared memory of a paged-attention CTA (see attention.cu).
func attnSmem(rows, blockSize, headDim int) int {
	return 4 * (rows*(headDim+1) + blockSize*(headDim+1) + blockSize*headDim + rows*blockSize + rows*headDim + 3*rows)
}

// attnPlan is the launch shape of one PagedAttention call.
type attnPlan struct {
	rows      int // query rows (token, head-of-group) per CTA
	tiles     int // grid.x
	splitLen  int // KV positions per split (multiple of the block size)
	numSplits int
	smem      int
}

// planAttention chooses rows per CTA (up to 16, within the shared memory
// limit) and, when the grid would not fill the GPU, splits the KV range
// (flash-decoding) into chunks of at least 256 positions.
func planAttention(m *kernel.AttentionMeta, numSMs int) (attnPlan, error) {
	g := m.NumHeads / m.NumKVHeads
	rows := 16
	for rows > 1 && rows/2 >= m.MaxQueryLen*g {
		rows /= 2
	}
	for rows > 1 && attnSmem(rows, m.BlockSize, m.HeadDim) > attnSmemLimit {
		rows /= 2
	}
	smem := attnSmem(rows, m.BlockSize, m.HeadDim)
	if smem > attnSmemLimit {
		return attnPlan{}, fmt.Errorf("cuda: PagedAttention: head dim %d with block size %d needs %d bytes of shared memory (limit %d)",
			m.HeadDim, m.BlockSize, smem, attnSmemLimit)
	}
	p := attnPlan{rows: rows, tiles: (m.MaxQueryLen*g + rows - 1) / rows, smem: smem, numSplits: 1}
	maxLen := max(m.MaxSeqLen, 1)
	p.splitLen = (maxLen + m.BlockSize - 1) / m.BlockSize * m.BlockSize
	base := p.tiles * m.NumSeqs * m.NumKVHeads
	const minSplit = 256
	if want := (4*numSMs + base - 1) / max(base, 1); want > 1 && maxLen > minSplit {
		splits := min(want, (maxLen+minSplit-1)/minSplit, maxSplits)
		p.splitLen = ((maxLen+splits-1)/splits + m.BlockSize - 1) / m.BlockSize * m.BlockSize
		p.numSplits = (maxLen + p.splitLen - 1) / p.splitLen
	}
	return p, nil
}

// decodeHeadDims and decodeGroups are the head dims and GQA group bounds
// the decode kernels are instantiated for (attention.cu, PAGED_DECODE_G).
var (
	decodeHeadDims = [2]int{64, 128}
	decodeGroups   = [4]int{1, 2, 4, 8}
)

// Decode path geometry (attention.cu): threads per CTA (DECODE_WARPS
// warps), the shortest partition and the CTAs per SM the grid aims at.
const (
	decodeThreads   = 128
	decodeMinPart   = 64 // shortest partition: one CTA step at head dim 128, 16-bit (DECODE_WARPS × 16 positions)
	decodeCTAsPerSM = 16
)

// decodePlan is the launch shape of the decode path.
type decodePlan struct {
	headIdx, groupIdx int // indices into decodeHeadDims, decodeGroups
	partLen, numParts int // context partition (flash-decoding split)
}

// planDecode returns the decode path's plan when the batch qualifies:
// every sequence has query length 1 (MaxQueryLen == 1), the head dim and
// the GQA group size have an instantiated kernel. The partition length
// comes from the context length: enough partitions that the grid holds
// about decodeCTAsPerSM CTAs per SM (so even batch 1 fills the GPU and
// the last wave is short), none shorter than decodeMinPart positions, at
// most maxSplits.
func planDecode(m *kernel.AttentionMeta, numSMs int) (decodePlan, bool) {
	if m.MaxQueryLen != 1 || m.NumSeqs != m.NumTokens {
		return decodePlan{}, false
	}
	p := decodePlan{headIdx: -1, groupIdx: -1}
	for i, hd := range decodeHeadDims {
		if hd == m.HeadDim {
			p.headIdx = i
		}
	}
	g := m.NumHeads / m.NumKVHeads
	for i := len(decodeGroups) - 1; i >= 0; i-- {
		if decodeGroups[i] >= g {
			p.groupIdx = i
		}
	}
	if p.headIdx < 0 || p.groupIdx < 0 {
		return decodePlan{}, false
	}
	maxLen := max(m.MaxSeqLen, 1)
	base := m.NumSeqs * m.NumKVHeads
	want := (decodeCTAsPerSM*max(numSMs, 1) + base - 1) / base
	parts := max(1, min(want, (maxLen+decodeMinPart-1)/decodeMinPart, maxSplits))
	p.partLen = (maxLen + parts - 1) / parts
	p.partLen = (p.partLen + 63) / 64 * 64 // whole CTA steps (64 positions at head dim 128, 16-bit)
	p.numParts = (maxLen + p.partLen - 1) / p.partLen
	return p, true
}

func checkMeta(m *kernel.AttentionMeta) error {
	switch {
	case m == nil:
		return errors.New("cuda: PagedAttention: nil meta")
	case m.NumKVHeads <= 0 || m.NumHeads <= 0 || m.NumHeads%m.NumKVHeads != 0:
		return fmt.Errorf("cuda: PagedAttention: %d heads over %d KV heads", m.NumHeads, m.NumKVHeads)
	case m.HeadDim <= 0 || m.BlockSize <= 0:
		return fmt.Errorf("cuda: PagedAttention: head dim %d, block size %d", m.HeadDim, m.BlockSize)
	case m.NumSeqs < 0 || m.NumTokens < 0 || m.MaxQueryLen < 0 || m.MaxSeqLen < 0 || m.MaxBlocksPerSeq < 0:
		return errors.New("cuda: PagedAttention: negative size in meta")
	case m.NumSeqs > 0 && m.MaxBlocksPerSeq*m.BlockSize < m.MaxSeqLen:
		return fmt.Errorf("cuda: PagedAttention: %d blocks of %d cannot hold %d positions", m.MaxBlocksPerSeq, m.BlockSize, m.MaxSeqLen)
	case m.NumSeqs*m.NumKVHeads > maxGridY:
		return fmt.Errorf("cuda: PagedAttention: %d sequences × %d KV heads exceed the grid", m.NumSeqs, m.NumKVHeads)
	}
	return fitsInt32("PagedAttention", m.NumTokens, m.NumSeqs, m.MaxBlocksPerSeq, m.MaxQueryLen, m.MaxSeqLen,
		m.NumHeads, m.HeadDim, m.BlockSize)
}
