//go:build amd64 && !purego

package cpu

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// AVX-512 matmul tiles (simd_avx512_amd64.s), 16 floats a vector:
//
//   - tile4x1*AVX512: 4 weight rows · 1 token, 32 elements an iteration
//     with two accumulators per row, and a software prefetch 1 KiB ahead
//     on each row (measured: bf16 decode from DRAM 19-20 → 25-26 GB/s per
//     CPU-second; f32 unchanged within noise).
//   - gemv4*AVX512: the 4x1 tile looped over consecutive row blocks,
//     storing straight into out: a whole decode product (m = 1) in one
//     call, without a return to Go every 4 rows.
//   - tile4xT*AVX512, T = 2..6: 4 weight rows · T tokens, up to 24
//     accumulators in registers: each weight vector feeds T FMAs, each
//     activation 4.
//
//   - accumRowsAVX512: the weighted sum of value rows of attention, 64
//     floats of the head at a time, two positions a step.
//
// k must be a multiple of 16. The other kernels (dot, axpy, conversions)
// are the AVX2 ones: their vectors are short (head dims) or rare.

//go:noescape
func tile4x1F32AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x2F32AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x3F32AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x4F32AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x5F32AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x6F32AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x1F16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x2F16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x3F16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x4F16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x5F16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x6F16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x1BF16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x2BF16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x3BF16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x4BF16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x5BF16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x6BF16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func gemv4F32AVX512(w unsafe.Pointer, ldw uintptr, x *float32, k uintptr, out *float32, nblk uintptr)

//go:noescape
func gemv4F16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, k uintptr, out *float32, nblk uintptr)

//go:noescape
func gemv4BF16AVX512(w unsafe.Pointer, ldw uintptr, x *float32, k uintptr, out *float32, nblk uintptr)

//go:noescape
func accumRowsAVX512(acc, v, w *float32, hd, n uintptr)

func accumAVX512Go(acc, v, w []float32, hd int) {
	n := len(w)
	if n == 0 || hd == 0 {
		return
	}
	if hd%16 != 0 {
		accumAVX2Go(acc, v, w, hd)
		return
	}
	_ = v[n*hd-1]
	acc = acc[:hd]
	accumRowsAVX512(&acc[0], &v[0], &w[0], uintptr(hd), uintptr(n))
}

func avx512Kernels() kernels {
	k := avx2Kernels
	k.name = "avx512"
	k.kStep = 16
	k.tiles = [3][]tileFn{
		{nil, tile4x1F32AVX512, tile4x2F32AVX512, tile4x3F32AVX512, tile4x4F32AVX512, tile4x5F32AVX512, tile4x6F32AVX512},
		{nil, tile4x1F16AVX512, tile4x2F16AVX512, tile4x3F16AVX512, tile4x4F16AVX512, tile4x5F16AVX512, tile4x6F16AVX512},
		{nil, tile4x1BF16AVX512, tile4x2BF16AVX512, tile4x3BF16AVX512, tile4x4BF16AVX512, tile4x5BF16AVX512, tile4x6BF16AVX512},
	}
	k.wide = 6
	k.accum = accumAVX512Go
	k.gemv = [3]gemvFn{gemv4F32AVX512, gemv4F16AVX512, gemv4BF16AVX512}
	return k
}

// hasAVX512 reports the AVX-512 subsets the tiles use, enabled by the OS.
func hasAVX512() bool {
	return cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL
}
