package cpu

import (
	"fmt"
	"unsafe"

	"github.com/vserve/vserve/runtime/kernel"
)

const (
	// tokenBlock bounds the activation rows one pass over a block of
	// weight rows reuses, so that they stay in L2 for large m (prefill).
	tokenBlock = 48
	// serialFlops is the work below which an op is not worth splitting.
	serialFlops = 1 << 16
)

// MatMul computes out[m×n] = x[m×k]·wᵀ, w stored [n×k] in F32, F16 or BF16.
func (be *Backend) MatMul(out, x, w kernel.Buffer, m, n, k int) error {
	if m < 0 || n < 0 || k < 0 {
		return fmt.Errorf("cpu: MatMul with negative shape %d×%d×%d", m, n, k)
	}
	o, err := f32s(out, m*n, "MatMul out")
	if err != nil {
		return err
	}
	xs, err := f32s(x, m*k, "MatMul x")
	if err != nil {
		return err
	}
	wb, err := weights(w, n*k, "MatMul w")
	if err != nil {
		return err
	}
	if m == 0 || n == 0 {
		return nil
	}
	if k == 0 {
		clear(o)
		return nil
	}
	parts := be.pool.size()
	if m*n*k < serialFlops {
		parts = 1
	}
	be.pool.run(min(parts, (n+3)/4), func(part, parts int) {
		lo, hi := split(n, part, parts, 4)
		matmulRows(o, xs, wb, m, n, k, lo, hi)
	})
	return nil
}

// dtIndex maps a weight dtype to the index of the tile tables.
func dtIndex(dt kernel.DType) int {
	switch dt {
	case kernel.F16:
		return 1
	case kernel.BF16:
		return 2
	}
	return 0
}

// matmulRows computes output columns [jlo, jhi) for every token.
func matmulRows(out, x []float32, w *buffer, m, n, k, jlo, jhi int) {
	k8 := k - k%simd.kStep
	direct := w.dt == kernel.F32 || simd.direct16
	var scratch []float32
	if !direct {
		scratch = make([]float32, 4*k)
	}
	if m == 1 && direct && k8 == k && simd.gemv[dtIndex(w.dt)] != nil {
		nblk := (jhi - jlo) / 4
		if nblk > 0 {
			wp, ldw, _, di := rowBlock(w, jlo, k, true, nil)
			simd.gemv[di](wp, uintptr(ldw), &x[0], uintptr(k), &out[jlo], uintptr(nblk))
		}
		jlo += 4 * nblk
	}
	wide := simd.wide
	for tb := 0; tb < m; tb += tokenBlock {
		te := min(m, tb+tokenBlock)
		j := jlo
		for ; j+4 <= jhi; j += 4 {
			wp, ldw, wf, di := rowBlock(w, j, k, direct, scratch)
			tiles := simd.tiles[di]
			for t := tb; t < te; {
				tt := min(wide, te-t)
				tiles[tt](wp, uintptr(ldw), &x[t*k], uintptr(k), uintptr(k8), &out[t*n+j], uintptr(n))
				if k8 < k {
					addTail(out, x, wf, w, j, t, tt, n, k, k8)
				}
				t += tt
			}
		}
		for ; j < jhi; j++ {
			row := w.f32Row(j*k, k, &scratch)
			for t := tb; t < te; t++ {
				out[t*n+j] = dot(row, x[t*k:t*k+k])
			}
		}
	}
}

// rowBlock returns the tile operand for weight rows j..j+3: the rows in
// place (direct) or converted into scratch, with their stride, the float32
// rows when available (for the k tail) and the tile table index.
func rowBlock(w *buffer, j, k int, direct bool, scratch []float32) (unsafe.Pointer, int, []float32, int) {
	switch {
	case w.dt == kernel.F32:
		return unsafe.Pointer(&w.f32[j*k]), k, w.f32[j*k : j*k+4*k], 0
	case direct:
		return unsafe.Pointer(&w.u16[j*k]), k, nil, dtIndex(w.dt)
	}
	w.rowF32(scratch, j*k)
	return unsafe.Pointer(&scratch[0]), k, scratch, 0
}

// addTail adds the k%kStep tail terms the tiles leave out to a tile's
// outputs.
func addTail(out, x, wf []float32, w *buffer, j, t, tokens, n, k, k8 int) {
	for tt := range tokens {
		xt := x[(t+tt)*k : (t+tt)*k+k]
		for r := range 4 {
			v := out[(t+tt)*n+j+r]
			for kk := k8; kk < k; kk++ {
				var wv float32
				if wf != nil {
					wv = wf[r*k+kk]
				} else {
					wv = kernel.ToF32(w.dt, w.u16[(j+r)*k+kk])
				}
				v += wv * xt[kk]
			}
			out[(t+tt)*n+j+r] = v
		}
	}
}
