package cpu

import (
	"unsafe"

	"github.com/vserve/vserve/runtime/kernel"
)

// genericKernels are the portable Go inner loops: the fallback on CPUs
// without AVX2/FMA/F16C and on other architectures, and the reference the
// assembly is tested against.
var genericKernels = kernels{
	name:      "generic",
	kStep:     1,
	tiles:     [3][]tileFn{genericTiles(f32Rows), genericTiles(f16Rows), genericTiles(bf16Rows)},
	wide:      3,
	dot:       dotGeneric,
	axpy:      axpyGeneric,
	scale:     scaleGeneric,
	accum:     accumGeneric,
	max:       maxGeneric,
	expScaled: expScaledGeneric,
	siluMul:   siluMulGeneric,
	prefetch:  func(unsafe.Pointer, uintptr) {},
	bf16:      bf16Generic,
	f16:       f16Generic,
}

func dotGeneric(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGeneric(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

func accumGeneric(acc, v, w []float32, hd int) {
	acc = acc[:hd]
	for p, wp := range w {
		axpyGeneric(acc, wp, v[p*hd:p*hd+hd])
	}
}

func maxGeneric(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	return m
}

func expScaledGeneric(x []float32, scale, sub float32) float32 {
	var s float32
	for i, v := range x {
		e := expf(scale*v - sub)
		x[i] = e
		s += e
	}
	return s
}

func siluMulGeneric(out, gate, up []float32) {
	gate, up = gate[:len(out)], up[:len(out)]
	for i, x := range gate {
		out[i] = x / (1 + expf(-x)) * up[i]
	}
}

func scaleGeneric(y []float32, a float32) {
	for i := range y {
		y[i] *= a
	}
}

func bf16Generic(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = kernel.BF16ToF32(h)
	}
}

func f16Generic(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = kernel.F16ToF32(h)
	}
}

func f32Rows(w unsafe.Pointer, ldw, k uintptr) [4][]float32 {
	var rows [4][]float32
	for r := range rows {
		rows[r] = unsafe.Slice((*float32)(unsafe.Add(w, 4*uintptr(r)*ldw)), k)
	}
	return rows
}

func u16Rows(w unsafe.Pointer, ldw, k uintptr, conv func([]float32, []uint16)) [4][]float32 {
	var rows [4][]float32
	for r := range rows {
		src := unsafe.Slice((*uint16)(unsafe.Add(w, 2*uintptr(r)*ldw)), k)
		rows[r] = make([]float32, k)
		conv(rows[r], src)
	}
	return rows
}

func tileRows(rows [4][]float32, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr, tokens int) {
	for t := range tokens {
		xt := unsafe.Slice((*float32)(unsafe.Add(unsafe.Pointer(x), 4*uintptr(t)*ldx)), k)
		o := unsafe.Slice((*float32)(unsafe.Add(unsafe.Pointer(out), 4*uintptr(t)*ldo)), 4)
		for r := range 4 {
			o[r] = dotGeneric(rows[r], xt)
		}
	}
}

func f16Rows(w unsafe.Pointer, ldw, k uintptr) [4][]float32 { return u16Rows(w, ldw, k, f16Generic) }

func bf16Rows(w unsafe.Pointer, ldw, k uintptr) [4][]float32 { return u16Rows(w, ldw, k, bf16Generic) }

// genericTiles returns the 4×T tiles, T = 1..3, for weight rows read by rows.
func genericTiles(rows func(w unsafe.Pointer, ldw, k uintptr) [4][]float32) []tileFn {
	tiles := make([]tileFn, 4)
	for t := 1; t < len(tiles); t++ {
		tiles[t] = func(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr) {
			tileRows(rows(w, ldw, k), x, ldx, k, out, ldo, t)
		}
	}
	return tiles
}
