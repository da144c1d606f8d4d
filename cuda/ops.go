//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"math"

	"github.com/vserve/vserve/runtime/kernel"
)

// need checks that a buffer holds at least n elements.
func need(op, what string, b *buffer, n int) error {
	if b.n < n {
		return fmt.Errorf("cuda: %s: %s has %d elements, need %d", op, what, b.n, n)
	}
	return nil
}

// floatBuf resolves a float (F32/F16/BF16) buffer of this backend with at
// least n elements.
func (be *Backend) floatBuf(op, what string, b kernel.Buffer, n int) (*buffer, error) {
	cb, err := be.own(op, b)
	if err != nil {
		return nil, err
	}
	if cb.dt == kernel.I32 {
		return nil, fmt.Errorf("cuda: %s: %s is an i32 buffer", op, what)
	}
	return cb, need(op, what, cb, n)
}

// intBuf resolves an I32 buffer with at least n elements.
func (be *Backend) intBuf(op, what string, b kernel.Buffer, n int) (*buffer, error) {
	cb, err := be.own(op, b)
	if err != nil {
		return nil, err
	}
	if cb.dt != kernel.I32 {
		return nil, fmt.Errorf("cuda: %s: %s is %v, want i32", op, what, cb.dt)
	}
	return cb, need(op, what, cb, n)
}

// elementwise launches a grid-stride kernel over n elements.
func (be *Backend) elementwise(k kernelFunc, n int, args ...arg) error {
	grid, block := be.gridFor(n)
	return be.launch(k, grid, block, 0, args...)
}

// Embedding gathers rows of table (F32/F16/BF16 [vocab×dim]) by ids.
func (be *Backend) Embedding(out, table, ids kernel.Buffer, numTokens, dim int) error {
	return be.gather("Embedding", out, table, ids, numTokens, dim)
}

// GatherRows copies rows[i] of x into row i of out.
func (be *Backend) GatherRows(out, x, rows kernel.Buffer, numRows, dim int) error {
	return be.gather("GatherRows", out, x, rows, numRows, dim)
}

func (be *Backend) gather(op string, out, table, idx kernel.Buffer, n, dim int) error {
	if err := fitsInt32(op, n, dim); err != nil {
		return err
	}
	if dim == 0 {
		return fmt.Errorf("cuda: %s: dim 0", op)
	}
	o, err := be.floatBuf(op, "out", out, n*dim)
	if err != nil {
		return err
	}
	t, err := be.floatBuf(op, "table", table, dim)
	if err != nil {
		return err
	}
	ix, err := be.intBuf(op, "indices", idx, n)
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return be.elementwise(be.fn.gatherRows, n*dim, bufArg(o), dtArg(o), bufArg(t), dtArg(t), bufArg(ix),
		i64Arg(n), i32Arg(dim), i64Arg(t.n/dim), ptrArg(be.flags))
}

// AddBias adds bias [dim] to every row of x in place.
func (be *Backend) AddBias(x, bias kernel.Buffer, rows, dim int) error {
	const op = "AddBias"
	if err := fitsInt32(op, rows, dim); err != nil {
		return err
	}
	xb, err := be.floatBuf(op, "x", x, rows*dim)
	if err != nil {
		return err
	}
	bb, err := be.floatBuf(op, "bias", bias, dim)
	if err != nil {
		return err
	}
	return be.elementwise(be.fn.addBias, rows*dim, bufArg(xb), dtArg(xb), bufArg(bb), dtArg(bb), i64Arg(rows), i32Arg(dim))
}

// Add computes out = a + b over n elements (out may alias a or b).
func (be *Backend) Add(out, a, b kernel.Buffer, n int) error {
	const op = "Add"
	o, err := be.floatBuf(op, "out", out, n)
	if err != nil {
		return err
	}
	ab, err := be.floatBuf(op, "a", a, n)
	if err != nil {
		return err
	}
	bb, err := be.floatBuf(op, "b", b, n)
	if err != nil {
		return err
	}
	return be.elementwise(be.fn.add, n, bufArg(o), dtArg(o), bufArg(ab), dtArg(ab), bufArg(bb), dtArg(bb), i64Arg(n))
}

// SiLUMul computes out = silu(gate) * up over rows×dim elements.
func (be *Backend) SiLUMul(out, gate, up kernel.Buffer, rows, dim int) error {
	const op = "SiLUMul"
	n := rows * dim
	o, err := be.floatBuf(op, "out", out, n)
	if err != nil {
		return err
	}
	g, err := be.floatBuf(op, "gate", gate, n)
	if err != nil {
		return err
	}
	u, err := be.floatBuf(op, "up", up, n)
	if err != nil {
		return err
	}
	return be.elementwise(be.fn.siluMul, n, bufArg(o), dtArg(o), bufArg(g), dtArg(g), bufArg(u), dtArg(u), i64Arg(n))
}

// normThreads picks a block size for one row of dim elements.
func normThreads(dim int) int {
	t := 32
	for t < dim && t < 1024 {
		t *= 2
	}
	return t
}

// RMSNorm normalises rows of x into out (which may alias x).
func (be *Backend) RMSNorm(out, x, w kernel.Buffer, rows, dim int, eps float32) error {
	const op = "RMSNorm"
	if err := fitsInt32(op, rows, dim); err != nil {
		return err
	}
	o, err := be.floatBuf(op, "out", out, rows*dim)
	if err != nil {
		return err
	}
	xb, err := be.floatBuf(op, "x", x, rows*dim)
	if err != nil {
		return err
	}
	wb, err := be.floatBuf(op, "w", w, dim)
	if err != nil {
		return err
	}
	return be.launch(be.fn.rmsnorm, dim3{rows, 1, 1}, dim3{normThreads(dim), 1, 1}, 0,
		bufArg(o), dtArg(o), bufArg(xb), dtArg(xb), bufArg(wb), dtArg(wb), i32Arg(dim), f32Arg(eps))
}

// FusedAddRMSNorm is an optional fused op (see FusedAddRMSNormer):
// residual += x, then x = RMSNorm(residual)·w, both in place.
func (be *Backend) FusedAddRMSNorm(x, residual, w kernel.Buffer, rows, dim int, eps float32) error {
	const op = "FusedAddRMSNorm"
	if err := fitsInt32(op, rows, dim); err != nil {
		return err
	}
	xb, err := be.floatBuf(op, "x", x, rows*dim)
	if err != nil {
		return err
	}
	rb, err := be.floatBuf(op, "residual", residual, rows*dim)
	if err != nil {
		return err
	}
	wb, err := be.floatBuf(op, "w", w, dim)
	if err != nil {
		return err
	}
	return be.launch(be.fn.fusedAddRMSNorm, dim3{rows, 1, 1}, dim3{normThreads(dim), 1, 1}, 0,
		bufArg(xb), dtArg(xb), bufArg(rb), dtArg(rb), bufArg(wb), dtArg(wb), i32Arg(dim), f32Arg(eps))
}

// FusedAddRMSNormer is the optional capability FusedAddRMSNorm provides.
type FusedAddRMSNormer interface {
	FusedAddRMSNorm(x, residual, w kernel.Buffer, rows, dim int, eps float32) error
}

var _ FusedAddRMSNormer = (*Backend)(nil)

// RoPE rotates q and k in place (rotate-half) at positions with invFreq (F32).
func (be *Backend) RoPE(q, k, positions, invFreq kernel.Buffer, numTokens, numHeads, numKVHeads, headDim int) error {
	const op = "RoPE"
	if err := fitsInt32(op, numTokens, numHeads, numKVHeads, headDim); err != nil {
		return err
	}
	if headDim%2 != 0 {
		return fmt.Errorf("cuda: %s: odd head dim %d", op, headDim)
	}
	qb, err := be.floatBuf(op, "q", q, numTokens*numHeads*headDim)
	if err != nil {
		return err
	}
	kb, err := be.floatBuf(op, "k", k, numTokens*numKVHeads*headDim)
	if err != nil {
		return err
	}
	pb, err := be.intBuf(op, "positions", positions, numTokens)
	if err != nil {
		return err
	}
	fb, err := be.floatBuf(op, "invFreq", invFreq, headDim/2)
	if err != nil {
		return err
	}
	if fb.dt != kernel.F32 {
		return fmt.Errorf("cuda: %s: invFreq is %v, want f32", op, fb.dt)
	}
	n := numTokens * (numHeads + numKVHeads) * (headDim / 2)
	return be.elementwise(be.fn.rope, n, bufArg(qb), dtArg(qb), bufArg(kb), dtArg(kb), bufArg(pb), bufArg(fb),
		i64Arg(numTokens), i32Arg(numHeads), i32Arg(numKVHeads), i32Arg(headDim))
}

// ReshapeAndCache stores key and value rows into the paged caches at slots.
func (be *Backend) ReshapeAndCache(key, value, kCache, vCache, slots kernel.Buffer, numTokens, numKVHeads, headDim, blockSize int) error {
	const op = "ReshapeAndCache"
	if err := fitsInt32(op, numTokens, numKVHeads, headDim, blockSize); err != nil {
		return err
	}
	if blockSize == 0 {
		return fmt.Errorf("cuda: %s: block size 0", op)
	}
	row := numKVHeads * headDim
	kb, err := be.floatBuf(op, "key", key, numTokens*row)
	if err != nil {
		return err
	}
	vb, err := be.floatBuf(op, "value", value, numTokens*row)
	if err != nil {
		return err
	}
	kc, err := be.floatBuf(op, "kCache", kCache, 0)
	if err != nil {
		return err
	}
	vc, err := be.floatBuf(op, "vCache", vCache, kc.n)
	if err != nil {
		return err
	}
	sb, err := be.intBuf(op, "slots", slots, numTokens)
	if err != nil {
		return err
	}
	if kb.dt != vb.dt || kc.dt != vc.dt {
		return fmt.Errorf("cuda: %s: key/value %v/%v and caches %v/%v must pair", op, kb.dt, vb.dt, kc.dt, vc.dt)
	}
	if kc.n%(row*blockSize) != 0 {
		return fmt.Errorf("cuda: %s: cache of %d elements is not whole blocks of %d", op, kc.n, row*blockSize)
	}
	if kc.n/(row*blockSize)*blockSize > math.MaxInt32 {
		return fmt.Errorf("cuda: %s: cache too large for int32 slots", op)
	}
	return be.elementwise(be.fn.reshapeAndCache, numTokens*row, bufArg(kb), bufArg(vb), dtArg(kb), bufArg(kc), bufArg(vc),
		dtArg(kc), bufArg(sb), i64Arg(numTokens), i32Arg(numKVHeads), i32Arg(headDim), i32Arg(blockSize))
}

// PagedAttention runs attention for a mixed prefill/decode batch over the
// paged caches (see attention.cu).
func (be *Backend) PagedAttention(out, q, kCache, vCache kernel.Buffer, m *kernel.AttentionMeta) error {
	const op = "PagedAttention"
	if err := checkMeta(m); err != nil {
		return err
	}
	n := m.NumTokens * m.NumHeads * m.HeadDim
	o, err := be.floatBuf(op, "out", out, n)
	if err != nil {
		return err
	}
	qb, err := be.floatBuf(op, "q", q, n)
	if err != nil {
		return err
	}
	kc, err := be.floatBuf(op, "kCache", kCache, 0)
	if err != nil {
		return err
	}
	vc, err := be.floatBuf(op, "vCache", vCache, kc.n)
	if err != nil {
		return err
	}
	if kc.dt != vc.dt {
		return fmt.Errorf("cuda: %s: caches %v and %v", op, kc.dt, vc.dt)
	}
	qs, err := be.intBuf(op, "QueryStart", m.QueryStart, m.NumSeqs+1)
	if err != nil {
		return err
	}
	sl, err := be.intBuf(op, "SeqLens", m.SeqLens, m.NumSeqs)
	if err != nil {
		return err
	}
	bt, err := be.intBuf(op, "BlockTables", m.BlockTables, m.NumSeqs*m.MaxBlocksPerSeq)
	if err != nil {
		return err
	}
	if m.NumSeqs == 0 || m.NumTokens == 0 {
		return nil
	}
	if dp, ok := planDecode(m, be.numSMs); ok && kc.ptr%16 == 0 && vc.ptr%16 == 0 {
		return be.pagedDecode(o, qb, kc, vc, qs, sl, bt, m, dp)
	}
	p, err := planAttention(m, be.numSMs)
	if err != nil {
		return err
	}
	var pm, pl, pacc uint64
	if p.numSplits > 1 {
		pairs := p.numSplits * m.NumTokens * m.NumHeads
		part, err := be.allocBuf(kernel.F32, pairs*(m.HeadDim+2))
		if err != nil {
			return err
		}
		defer be.Free(part) // reused only by ops queued after this one
		pm, pl, pacc = part.ptr, part.ptr+uint64(pairs)*4, part.ptr+uint64(2*pairs)*4
	}
	grid := dim3{p.tiles, m.NumSeqs * m.NumKVHeads, p.numSplits}
	err = be.launch(be.fn.attention[kc.dt], grid, dim3{128, 1, 1}, p.smem,
		bufArg(o), dtArg(o), bufArg(qb), dtArg(qb), bufArg(kc), bufArg(vc), bufArg(qs), bufArg(sl), bufArg(bt),
		i32Arg(m.MaxBlocksPerSeq), i32Arg(m.BlockSize), i32Arg(m.NumHeads), i32Arg(m.NumKVHeads), i32Arg(m.HeadDim),
		f32Arg(m.Scale), i32Arg(p.rows), i32Arg(p.splitLen), i32Arg(p.numSplits), i64Arg(m.NumTokens),
		ptrArg(pm), ptrArg(pl), ptrArg(pacc))
	if err != nil || p.numSplits == 1 {
		return err
	}
	return be.launch(be.fn.attentionCombine, dim3{m.NumTokens * m.NumHeads, 1, 1}, dim3{min(normThreads(m.HeadDim), 256), 1, 1}, 0,
		bufArg(o), dtArg(o), ptrArg(pm), ptrArg(pl), ptrArg(pacc), i32Arg(p.numSplits), i64Arg(m.NumTokens),
		i32Arg(m.NumHeads), i32Arg(m.HeadDim))
}

// pagedDecode runs the decode path (every sequence has one query token):
// the split-KV decode kernel, then the combine kernel when the context is
// partitioned (see attention.cu).
func (be *Backend) pagedDecode(o, qb, kc, vc, qs, sl, bt *buffer, m *kernel.AttentionMeta, p decodePlan) error {
	var pm, pl, pacc uint64
	if p.numParts > 1 {
		pairs := p.numParts * m.NumTokens * m.NumHeads
		part, err := be.allocBuf(kernel.F32, pairs*(m.HeadDim+2))
		if err != nil {
			return err
		}
		defer be.Free(part) // reused only by ops queued after this one
		pm, pl, pacc = part.ptr, part.ptr+uint64(pairs)*4, part.ptr+uint64(2*pairs)*4
	}
	grid := dim3{p.numParts, m.NumSeqs * m.NumKVHeads, 1}
	err := be.launch(be.fn.decode[kc.dt][p.headIdx][p.groupIdx], grid, dim3{decodeThreads, 1, 1}, 0,
		bufArg(o), dtArg(o), bufArg(qb), dtArg(qb), bufArg(kc), bufArg(vc), bufArg(qs), bufArg(sl), bufArg(bt),
		i32Arg(m.MaxBlocksPerSeq), i32Arg(m.BlockSize), i32Arg(m.NumHeads), i32Arg(m.NumKVHeads),
		i32Arg(m.NumHeads/m.NumKVHeads), f32Arg(m.Scale), i32Arg(p.partLen), i32Arg(p.numParts), i64Arg(m.NumTokens),
		ptrArg(pm), ptrArg(pl), ptrArg(pacc))
	if err != nil || p.numParts == 1 {
		return err
	}
	return be.launch(be.fn.attentionCombine, dim3{m.NumTokens * m.NumHeads, 1, 1}, dim3{min(normThreads(m.HeadDim), 256), 1, 1}, 0,
		bufArg(o), dtArg(o), ptrArg(pm), ptrArg(pl), ptrArg(pacc), i32Arg(p.numParts), i64Arg(m.NumTokens),
		i32Arg(m.NumHeads), i32Arg(m.HeadDim))
}
