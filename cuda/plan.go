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
	case m.NumSeqs*m.NumKVHeads > 65535:
		return fmt.Errorf("cuda: PagedAttention: %d sequences × %d KV heads exceed the grid", m.NumSeqs, m.NumKVHeads)
	}
	return fitsInt32("PagedAttention", m.NumTokens, m.NumSeqs, m.MaxBlocksPerSeq, m.MaxQueryLen, m.MaxSeqLen,
		m.NumHeads, m.HeadDim, m.BlockSize)
}
