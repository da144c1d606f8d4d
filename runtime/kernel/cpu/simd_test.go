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
	if simd.name == genericKernels.name {
		t.Skip("no SIMD kernels on this CPU")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 70 {
		a, b := randF32(r, n), randF32(r, n)
		if got, want := simd.dot(a, b), dotGeneric(a, b); !close32(got, want, float32(n)) {
			t.Errorf("dot n=%d: %v, generic %v", n, got, want)
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
	if simd.name == genericKernels.name {
		t.Skip("no SIMD kernels on this CPU")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, k := range []int{8, 16, 24, 40, 136, 288} {
		for di, dt := range []kernel.DType{kernel.F32, kernel.F16, kernel.BF16} {
			ldw, ldx := k+8, k+16 // strides wider than k
			wf := randF32(r, 4*ldw)
			x := randF32(r, 3*ldx)
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
			for _, tokens := range []int{1, 3} {
				fast, ref := simd.tile4x1[di], genericKernels.tile4x1[di]
				if tokens == 3 {
					fast, ref = simd.tile4x3[di], genericKernels.tile4x3[di]
				}
				var got, want [12]float32
				fast(wp, uintptr(ldw), &x[0], uintptr(ldx), uintptr(k), &got[0])
				ref(wp, uintptr(ldw), &x[0], uintptr(ldx), uintptr(k), &want[0])
				for i := range 4 * tokens {
					if !close32(got[i], want[i], float32(k)) {
						t.Errorf("tile 4x%d %v k=%d res[%d]: %v, generic %v", tokens, dt, k, i, got[i], want[i])
					}
				}
			}
		}
	}
}
