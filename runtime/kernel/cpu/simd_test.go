package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/vserve/vserve/runtime/kernel"
)

func randF32(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func close32(a, b, scale float32) bool {
	return math.Abs(float64(a-b)) <= 1e-5*float64(scale+1)
}

// TestSIMDMatchesGeneric compares the kernels in use with the portable
// ones on every length around the vector widths.
func TestSIMDMatchesGeneric(t *testing.T) {
	for _, k := range platformKernels()[1:] {
		t.Run(k.name, func(t *testing.T) { testSIMDMatchesGeneric(t, k) })
	}
}

func testSIMDMatchesGeneric(t *testing.T, simd kernels) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 70 {
		a, b := randF32(r, n), randF32(r, n)
		if got, want := simd.dot(a, b), dotGeneric(a, b); !close32(got, want, float32(n)) {
			t.Errorf("dot n=%d: %v, generic %v", n, got, want)
		}
		if n > 0 {
			for _, hd := range []int{8, 24, 32, 64, 72, 128, 5} {
				v := randF32(r, n*hd)
				acc1 := randF32(r, hd)
				acc2 := append([]float32(nil), acc1...)
				simd.accum(acc1, v, a, hd)
				accumGeneric(acc2, v, a, hd)
				for i := range hd {
					if !close32(acc1[i], acc2[i], float32(n)) {
						t.Fatalf("accum n=%d hd=%d [%d]: %v, generic %v", n, hd, i, acc1[i], acc2[i])
					}
				}
			}
		}
		if n > 0 {
			if got, want := simd.max(a), maxGeneric(a); got != want {
				t.Errorf("max n=%d: %v, generic %v", n, got, want)
			}
			e1 := append([]float32(nil), a...)
			e2 := append([]float32(nil), a...)
			s1 := simd.expScaled(e1, 0.7, 1.5)
			s2 := expScaledGeneric(e2, 0.7, 1.5)
			if !close32(s1, s2, s2) {
				t.Errorf("expScaled n=%d: sum %v, generic %v", n, s1, s2)
			}
			for i := range n {
				if math.Abs(float64(e1[i]-e2[i])) > 1e-6*float64(e2[i]) {
					t.Fatalf("expScaled n=%d [%d] of %v: %v, generic %v", n, i, a[i], e1[i], e2[i])
				}
			}
		}
		{
			g, u := randF32(r, n), randF32(r, n)
			for i := range g {
				g[i] *= 8
			}
			o1, o2 := make([]float32, n), make([]float32, n)
			simd.siluMul(o1, g, u)
			siluMulGeneric(o2, g, u)
			for i := range n {
				if math.Abs(float64(o1[i]-o2[i])) > 1e-6*(math.Abs(float64(o2[i]))+1e-3) {
					t.Fatalf("siluMul n=%d [%d] of %v·%v: %v, generic %v", n, i, g[i], u[i], o1[i], o2[i])
				}
			}
		}
		y1 := randF32(r, n)
		y2 := append([]float32(nil), y1...)
		simd.axpy(y1, 0.75, a)
		axpyGeneric(y2, 0.75, a)
		simd.scale(a, 1.5)
		scaleGeneric(b, 1.5)
		for i := range n {
			if !close32(y1[i], y2[i], 1) {
				t.Fatalf("axpy n=%d [%d]: %v, generic %v", n, i, y1[i], y2[i])
			}
		}
		bits := make([]uint16, n)
		for i := range bits {
			bits[i] = uint16(r.Uint32())
		}
		for _, c := range []struct {
			name      string
			fast, ref func([]float32, []uint16)
		}{{"bf16", simd.bf16, bf16Generic}, {"f16", simd.f16, f16Generic}} {
			got, want := make([]float32, n), make([]float32, n)
			c.fast(got, bits)
			c.ref(want, bits)
			for i := range n {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
					t.Fatalf("%s n=%d [%d] bits %#04x: %v, generic %v", c.name, n, i, bits[i], got[i], want[i])
				}
			}
		}
	}
}

func TestSIMDTiles(t *testing.T) {
	for _, k := range platformKernels()[1:] {
		t.Run(k.name, func(t *testing.T) { testSIMDTiles(t, k) })
	}
}

func testSIMDTiles(t *testing.T, simd kernels) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, k := range []int{16, 32, 48, 80, 144, 288, 768} {
		if k%simd.kStep != 0 {
			t.Fatalf("k %d is not a multiple of the kernel step %d", k, simd.kStep)
		}
		for di, dt := range []kernel.DType{kernel.F32, kernel.F16, kernel.BF16} {
			ldw, ldx := k+8, k+16 // strides wider than k
			wf := randF32(r, 4*ldw)
			x := randF32(r, maxWide*ldx)
			var wp unsafe.Pointer
			if dt == kernel.F32 {
				wp = unsafe.Pointer(&wf[0])
			} else {
				bits := make([]uint16, len(wf))
				for i, v := range wf {
					bits[i] = kernel.FromF32(dt, v)
				}
				wp = unsafe.Pointer(&bits[0])
			}
			for tokens := 1; tokens <= simd.wide; tokens++ {
				fast := simd.tiles[di][tokens]
				const ldo = 7 // a row stride wider than the 4 outputs
				var got, want [ldo * maxWide]float32
				fast(wp, uintptr(ldw), &x[0], uintptr(ldx), uintptr(k), &got[0], ldo)
				tileRows(u16OrF32Rows(dt, wp, uintptr(ldw), uintptr(k)), &x[0], uintptr(ldx), uintptr(k), &want[0], ldo, tokens)
				for i := range ldo * tokens {
					if i%ldo >= 4 {
						if got[i] != 0 {
							t.Errorf("tile 4x%d %v k=%d wrote out[%d] outside its 4 columns", tokens, dt, k, i)
						}
						continue
					}
					if !close32(got[i], want[i], float32(k)) {
						t.Errorf("tile 4x%d %v k=%d res[%d]: %v, generic %v", tokens, dt, k, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// u16OrF32Rows returns 4 weight rows of dt as float32 for the reference.
func u16OrF32Rows(dt kernel.DType, w unsafe.Pointer, ldw, k uintptr) [4][]float32 {
	switch dt {
	case kernel.F16:
		return u16Rows(w, ldw, k, f16Generic)
	case kernel.BF16:
		return u16Rows(w, ldw, k, bf16Generic)
	}
	return f32Rows(w, ldw, k)
}

func TestSIMDGemv(t *testing.T) {
	for _, ks := range platformKernels() {
		for di, dt := range []kernel.DType{kernel.F32, kernel.F16, kernel.BF16} {
			g := ks.gemv[di]
			if g == nil {
				continue
			}
			r := rand.New(rand.NewPCG(5, 6))
			for _, sh := range []struct{ nblk, k int }{{1, 16}, {2, 24}, {3, 48}, {5, 288}, {2, 1376}} {
				k := sh.k
				if k%ks.kStep != 0 {
					continue
				}
				wf := randF32(r, 4*sh.nblk*k)
				x := randF32(r, k)
				wb := &buffer{dt: dt, f32: wf}
				if dt != kernel.F32 {
					wb = &buffer{dt: dt, u16: make([]uint16, len(wf))}
					for i, v := range wf {
						wb.u16[i] = kernel.FromF32(dt, v)
					}
				}
				wp, _, _, _ := rowBlock(wb, 0, k, true, nil)
				got := make([]float32, 4*sh.nblk)
				g(wp, uintptr(k), &x[0], uintptr(k), &got[0], uintptr(sh.nblk))
				row := make([]float32, k)
				for j := range got {
					wb.rowF32(row, j*k)
					if want := dotGeneric(row, x); !close32(got[j], want, float32(k)) {
						t.Errorf("%s gemv %v %+v out[%d]: %v, want %v", ks.name, dt, sh, j, got[j], want)
					}
				}
			}
		}
	}
}
