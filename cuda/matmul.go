//go:build cuda || cudaemu

package cuda

import (
	"fmt"

	"github.com/vserve/vserve/runtime/kernel"
)

// cudaType maps a float dtype to cudaDataType.
func cudaType(dt kernel.DType) int {
	switch dt {
	case kernel.F16:
		return cudaR16F
	case kernel.BF16:
		return cudaR16BF
	}
	return cudaR32F
}

// convertInto enqueues dst[:n] = (dst dtype) src[:n].
func (be *Backend) convertInto(dst, src *buffer, n int) error {
	return be.elementwise(be.fn.convert, n, bufArg(dst), dtArg(dst), bufArg(src), dtArg(src), i64Arg(n))
}

// scratchLike allocates a temporary of n elements of dt; the caller frees
// it after enqueuing its last use.
func (be *Backend) scratch(dt kernel.DType, n int) (*buffer, error) { return be.allocBuf(dt, n) }

// MatMul computes out[m×n] = x[m×k]·wᵀ with w stored [n×k], through
// cublasGemmEx with fp32 accumulation. In row-major terms this is the
// column-major product outᵀ(n×m) = op_T(w)(n×k) · xᵀ(k×m).
//
// cuBLAS multiplies A and B of one type: f32 activations with 16-bit
// weights get the weights widened to f32 (exact; used by the f32 compute
// mode, a checking mode), f16 activations with bf16 weights (or the
// reverse) get both widened to f32. The output is written directly when
// cuBLAS supports its type for the pair, else through an f32 temporary.
func (be *Backend) MatMul(out, x, w kernel.Buffer, m, n, k int) error {
	const op = "MatMul"
	if err := fitsInt32(op, m, n, k); err != nil {
		return err
	}
	o, err := be.floatBuf(op, "out", out, m*n)
	if err != nil {
		return err
	}
	xb, err := be.floatBuf(op, "x", x, m*k)
	if err != nil {
		return err
	}
	wb, err := be.floatBuf(op, "w", w, n*k)
	if err != nil {
		return err
	}
	if m == 0 || n == 0 {
		return nil
	}
	var temps []*buffer
	defer func() {
		for _, t := range temps {
			be.Free(t)
		}
	}()
	tmp := func(dt kernel.DType, cnt int) (*buffer, error) {
		t, err := be.scratch(dt, cnt)
		if err == nil {
			temps = append(temps, t)
		}
		return t, err
	}
	a, b := wb, xb
	switch {
	case xb.dt == wb.dt:
	case xb.dt == kernel.F32 || wb.dt == kernel.F32:
		// Widen the 16-bit side to f32.
		if wb.dt != kernel.F32 {
			if a, err = tmp(kernel.F32, n*k); err != nil {
				return err
			}
			if err = be.convertInto(a, wb, n*k); err != nil {
				return err
			}
		} else {
			if b, err = tmp(kernel.F32, m*k); err != nil {
				return err
			}
			if err = be.convertInto(b, xb, m*k); err != nil {
				return err
			}
		}
	default: // f16 vs bf16: neither converts exactly to the other; widen both
		if a, err = tmp(kernel.F32, n*k); err != nil {
			return err
		}
		if err = be.convertInto(a, wb, n*k); err != nil {
			return err
		}
		if b, err = tmp(kernel.F32, m*k); err != nil {
			return err
		}
		if err = be.convertInto(b, xb, m*k); err != nil {
			return err
		}
	}
	c := o
	if o.dt != a.dt && o.dt != kernel.F32 {
		if c, err = tmp(kernel.F32, m*n); err != nil {
			return err
		}
	}
	g := &gemmArgs{
		transA: cublasOpT, transB: cublasOpN, m: n, n: m, k: k,
		a: a.ptr, aType: cudaType(a.dt), lda: k,
		b: b.ptr, bType: cudaType(b.dt), ldb: k,
		c: c.ptr, cType: cudaType(c.dt), ldc: n,
		alpha: 1, beta: 0,
	}
	drv := be.drv
	if err := be.dev.enqueue(fmt.Sprintf("MatMul %dx%dx%d", m, n, k), func() error { return drv.gemm(g) }); err != nil {
		return err
	}
	if c != o {
		return be.convertInto(o, c, m*n)
	}
	return nil
}
