package cpu

import (
	"fmt"
	"math"

	"github.com/vserve/vserve/runtime/kernel"
)

// Embedding copies rows ids[t] of table [vocab×dim] (F32, F16 or BF16)
// into out[t] as float32.
func (be *Backend) Embedding(out, table, ids kernel.Buffer, numTokens, dim int) error {
	o, err := f32s(out, numTokens*dim, "Embedding out")
	if err != nil {
		return err
	}
	is, err := i32s(ids, numTokens, "Embedding ids")
	if err != nil {
		return err
	}
	tb, err := weights(table, 0, "Embedding table")
	if err != nil {
		return err
	}
	if dim <= 0 {
		return fmt.Errorf("cpu: Embedding dim %d", dim)
	}
	rows := tb.Len() / dim
	for t, id := range is {
		if id < 0 || int(id) >= rows {
			return fmt.Errorf("cpu: Embedding id %d of token %d outside the table's %d rows", id, t, rows)
		}
		tb.rowF32(o[t*dim:t*dim+dim], int(id)*dim)
	}
	return nil
}

// AddBias adds bias [dim] (any float dtype) to each of rows rows of x.
func (be *Backend) AddBias(x, bias kernel.Buffer, rows, dim int) error {
	xs, err := f32s(x, rows*dim, "AddBias x")
	if err != nil {
		return err
	}
	bb, err := weights(bias, dim, "AddBias bias")
	if err != nil {
		return err
	}
	var scratch []float32
	b := bb.f32Row(0, dim, &scratch)
	for r := range rows {
		axpy(xs[r*dim:r*dim+dim], 1, b)
	}
	return nil
}

// RMSNorm writes out[r] = x[r] / sqrt(mean(x[r]²) + eps) · w; out may be x.
func (be *Backend) RMSNorm(out, x, w kernel.Buffer, rows, dim int, eps float32) error {
	o, err := f32s(out, rows*dim, "RMSNorm out")
	if err != nil {
		return err
	}
	xs, err := f32s(x, rows*dim, "RMSNorm x")
	if err != nil {
		return err
	}
	wb, err := weights(w, dim, "RMSNorm w")
	if err != nil {
		return err
	}
	var scratch []float32
	wf := wb.f32Row(0, dim, &scratch)
	for r := range rows {
		rmsNormRow(o[r*dim:r*dim+dim], xs[r*dim:r*dim+dim], wf, eps)
	}
	return nil
}

func rmsNormRow(out, x, w []float32, eps float32) {
	if len(x) == 0 {
		return
	}
	ss := dot(x, x)
	inv := float32(1 / math.Sqrt(float64(ss)/float64(len(x))+float64(eps)))
	for i, v := range x {
		out[i] = v * inv * w[i]
	}
}

// Add writes out = a + b elementwise; out may alias a or b.
func (be *Backend) Add(out, a, b kernel.Buffer, n int) error {
	o, err := f32s(out, n, "Add out")
	if err != nil {
		return err
	}
	as, err := f32s(a, n, "Add a")
	if err != nil {
		return err
	}
	bs, err := f32s(b, n, "Add b")
	if err != nil {
		return err
	}
	for i := range o {
		o[i] = as[i] + bs[i]
	}
	return nil
}

// SiLUMul writes out = silu(gate)·up elementwise; out may alias either.
func (be *Backend) SiLUMul(out, gate, up kernel.Buffer, rows, dim int) error {
	n := rows * dim
	o, err := f32s(out, n, "SiLUMul out")
	if err != nil {
		return err
	}
	g, err := f32s(gate, n, "SiLUMul gate")
	if err != nil {
		return err
	}
	u, err := f32s(up, n, "SiLUMul up")
	if err != nil {
		return err
	}
	simd.siluMul(o, g, u)
	return nil
}

// RoPE rotates q and k in place, rotate-half form: for each head and
// i < headDim/2, with θ = float32(pos)·invFreq[i] (a float32 product, as
// the reference implementations compute it),
// (x[i], x[i+h/2]) ← (x[i]·cos θ − x[i+h/2]·sin θ, x[i+h/2]·cos θ + x[i]·sin θ).
func (be *Backend) RoPE(q, k, positions, invFreq kernel.Buffer, numTokens, numHeads, numKVHeads, headDim int) error {
	if headDim%2 != 0 {
		return fmt.Errorf("cpu: RoPE with odd head dim %d", headDim)
	}
	qs, err := f32s(q, numTokens*numHeads*headDim, "RoPE q")
	if err != nil {
		return err
	}
	ks, err := f32s(k, numTokens*numKVHeads*headDim, "RoPE k")
	if err != nil {
		return err
	}
	pos, err := i32s(positions, numTokens, "RoPE positions")
	if err != nil {
		return err
	}
	half := headDim / 2
	inv, err := f32s(invFreq, half, "RoPE invFreq")
	if err != nil {
		return err
	}
	cos := make([]float32, half)
	sin := make([]float32, half)
	for t := range numTokens {
		for i := range half {
			s, c := math.Sincos(float64(float32(pos[t]) * inv[i]))
			cos[i], sin[i] = float32(c), float32(s)
		}
		for h := range numHeads {
			off := (t*numHeads + h) * headDim
			rotateHalf(qs[off:off+headDim], cos, sin)
		}
		for h := range numKVHeads {
			off := (t*numKVHeads + h) * headDim
			rotateHalf(ks[off:off+headDim], cos, sin)
		}
	}
	return nil
}

func rotateHalf(x, cos, sin []float32) {
	half := len(cos)
	lo, hi := x[:half], x[half:2*half]
	for i := range half {
		a, b := lo[i], hi[i]
		lo[i] = a*cos[i] - b*sin[i]
		hi[i] = b*cos[i] + a*sin[i]
	}
}

// GatherRows copies row rows[i] of x into row i of out.
func (be *Backend) GatherRows(out, x, rows kernel.Buffer, numRows, dim int) error {
	o, err := f32s(out, numRows*dim, "GatherRows out")
	if err != nil {
		return err
	}
	xs, err := f32All(x, "GatherRows x")
	if err != nil {
		return err
	}
	rs, err := i32s(rows, numRows, "GatherRows rows")
	if err != nil {
		return err
	}
	for i, r := range rs {
		if r < 0 || (int(r)+1)*dim > len(xs) {
			return fmt.Errorf("cpu: GatherRows row %d outside x of %d rows", r, len(xs)/max(dim, 1))
		}
		copy(o[i*dim:i*dim+dim], xs[int(r)*dim:int(r)*dim+dim])
	}
	return nil
}
