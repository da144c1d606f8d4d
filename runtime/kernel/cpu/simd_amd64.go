//go:build amd64 && !purego

package cpu

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// AVX2 + FMA + F16C kernels (simd_amd64.s). Each processes the largest
// multiple of 8 elements of its input; the Go wrappers finish the tails.
//
//   - tile4x1*: 4 weight rows · 1 token, 16 elements an iteration with two
//     accumulators per row (decode: memory bound, keep loads in flight).
//   - tile4x2*, tile4x3*: 4 weight rows · 2 or 3 tokens, one accumulator
//     per (row, token): each weight load feeds T FMAs, each activation 4.
//   - gemv4*: the 4x1 tile looped over consecutive 4-row blocks, storing
//     straight into out (decode, m = 1), prefetching 1 KiB ahead per row.
//   - 16-bit weights are widened in registers: VCVTPH2PS for f16,
//     zero-extend and shift left 16 for bf16.

//go:noescape
func tile4x1F32AVX2(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x3F32AVX2(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x1F16AVX2(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x3F16AVX2(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x1BF16AVX2(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x3BF16AVX2(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x2F32AVX2(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x2F16AVX2(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func tile4x2BF16AVX2(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

//go:noescape
func gemv4F32AVX2(w unsafe.Pointer, ldw uintptr, x *float32, k uintptr, out *float32, nblk uintptr)

//go:noescape
func gemv4F16AVX2(w unsafe.Pointer, ldw uintptr, x *float32, k uintptr, out *float32, nblk uintptr)

//go:noescape
func gemv4BF16AVX2(w unsafe.Pointer, ldw uintptr, x *float32, k uintptr, out *float32, nblk uintptr)

//go:noescape
func dotAVX2(a, b *float32, n uintptr) float32

//go:noescape
func axpyAVX2(y, x *float32, a float32, n uintptr)

//go:noescape
func accumRowsAVX2(acc, v, w *float32, hd, n uintptr)

//go:noescape
func maxAVX2(x *float32, n uintptr) float32

//go:noescape
func expScaledAVX2(x *float32, n uintptr, scale, sub float32) float32

//go:noescape
func siluMulAVX2(out, gate, up *float32, n uintptr)

//go:noescape
func prefetchAMD64(p unsafe.Pointer, n uintptr)

//go:noescape
func scaleAVX2(y *float32, a float32, n uintptr)

//go:noescape
func cvtF16AVX2(dst *float32, src *uint16, n uintptr)

//go:noescape
func cvtBF16AVX2(dst *float32, src *uint16, n uintptr)

var avx2Kernels = kernels{
	name:     "avx2",
	kStep:    8,
	direct16: true,
	tiles: [3][]tileFn{
		{nil, tile4x1F32AVX2, tile4x2F32AVX2, tile4x3F32AVX2},
		{nil, tile4x1F16AVX2, tile4x2F16AVX2, tile4x3F16AVX2},
		{nil, tile4x1BF16AVX2, tile4x2BF16AVX2, tile4x3BF16AVX2},
	},
	wide:      3,
	gemv:      [3]gemvFn{gemv4F32AVX2, gemv4F16AVX2, gemv4BF16AVX2},
	dot:       dotAVX2Go,
	axpy:      axpyAVX2Go,
	scale:     scaleAVX2Go,
	accum:     accumAVX2Go,
	max:       maxAVX2Go,
	expScaled: expScaledAVX2Go,
	siluMul:   siluMulAVX2Go,
	prefetch:  prefetchAMD64,
	bf16:      bf16AVX2Go,
	f16:       f16AVX2Go,
}

// platformKernels lists the kernel sets this CPU supports, best last.
func platformKernels() []kernels {
	ks := []kernels{genericKernels}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && hasF16C() {
		ks = append(ks, avx2Kernels)
		if hasAVX512() {
			ks = append(ks, avx512Kernels())
		}
	}
	return ks
}

// hasF16C reports F16C support (CPUID.1:ECX bit 29), which x/sys/cpu does
// not expose; every CPU with AVX2 and FMA in practice has it, but check.
func hasF16C() bool {
	_, _, ecx, _ := cpuid(1, 0)
	return ecx&(1<<29) != 0
}

//go:noescape
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

func dotAVX2Go(a, b []float32) float32 {
	n := len(a)
	if n == 0 {
		return 0
	}
	b = b[:n]
	n8 := n &^ 7
	var s float32
	if n8 > 0 {
		s = dotAVX2(&a[0], &b[0], uintptr(n8))
	}
	for i := n8; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

func axpyAVX2Go(y []float32, a float32, x []float32) {
	n := len(y)
	if n == 0 {
		return
	}
	x = x[:n]
	n8 := n &^ 7
	if n8 > 0 {
		axpyAVX2(&y[0], &x[0], a, uintptr(n8))
	}
	for i := n8; i < n; i++ {
		y[i] += a * x[i]
	}
}

func scaleAVX2Go(y []float32, a float32) {
	n8 := len(y) &^ 7
	if n8 > 0 {
		scaleAVX2(&y[0], a, uintptr(n8))
	}
	for i := n8; i < len(y); i++ {
		y[i] *= a
	}
}

func bf16AVX2Go(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n8 := len(dst) &^ 7
	if n8 > 0 {
		cvtBF16AVX2(&dst[0], &src[0], uintptr(n8))
	}
	bf16Generic(dst[n8:], src[n8:])
}

func f16AVX2Go(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n8 := len(dst) &^ 7
	if n8 > 0 {
		cvtF16AVX2(&dst[0], &src[0], uintptr(n8))
	}
	f16Generic(dst[n8:], src[n8:])
}

func accumAVX2Go(acc, v, w []float32, hd int) {
	n := len(w)
	if n == 0 || hd == 0 {
		return
	}
	_ = v[n*hd-1]
	acc = acc[:hd]
	if hd%8 == 0 {
		accumRowsAVX2(&acc[0], &v[0], &w[0], uintptr(hd), uintptr(n))
		return
	}
	for p, wp := range w {
		axpyAVX2Go(acc, wp, v[p*hd:p*hd+hd])
	}
}

func maxAVX2Go(x []float32) float32 {
	n8 := len(x) &^ 7
	if n8 == 0 {
		return maxGeneric(x)
	}
	m := maxAVX2(&x[0], uintptr(n8))
	for _, v := range x[n8:] {
		m = max(m, v)
	}
	return m
}

func expScaledAVX2Go(x []float32, scale, sub float32) float32 {
	n8 := len(x) &^ 7
	var s float32
	if n8 > 0 {
		s = expScaledAVX2(&x[0], uintptr(n8), scale, sub)
	}
	return s + expScaledGeneric(x[n8:], scale, sub)
}

func siluMulAVX2Go(out, gate, up []float32) {
	n := len(out)
	gate, up = gate[:n], up[:n]
	n8 := n &^ 7
	if n8 > 0 {
		siluMulAVX2(&out[0], &gate[0], &up[0], uintptr(n8))
	}
	siluMulGeneric(out[n8:], gate[n8:], up[n8:])
}
