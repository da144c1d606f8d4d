package cpu

import (
	"os"
	"unsafe"
)

// The inner loops, as function values chosen once at start-up: assembly
// where the CPU supports it (simd_amd64.go), portable Go otherwise
// (simd_generic.go). All of them are pure functions of their arguments.

// tileFn computes the dot products of 4 weight rows (element type given by
// the function; row r starts at w + r·ldw elements) with T activation rows
// (token t starts at x + t·ldx) over the first k elements, where k is a
// multiple of kStep, writing out[t·ldo + r].
type tileFn func(w unsafe.Pointer, ldw uintptr, x *float32, ldx uintptr, k uintptr, out *float32, ldo uintptr)

// gemvFn computes out[0:4·nblk] = the dot products of 4·nblk weight rows
// (stride ldw elements) with x over k elements.
type gemvFn func(w unsafe.Pointer, ldw uintptr, x *float32, k uintptr, out *float32, nblk uintptr)

// kernels is one implementation of the inner loops.
type kernels struct {
	name string
	// kStep is the granularity of k the tiles handle; the caller adds the
	// remaining k%kStep terms itself.
	kStep int
	// direct16 says the 16-bit tiles widen the weights in registers (for
	// every m: measured faster than converting each 4-row block to float32
	// scratch once, 16×2048×768 bf16 143 → 208 GFLOP/cpu-s with AVX-512);
	// otherwise (the portable loops) MatMul converts each 4-row block once
	// and uses the F32 tiles.
	direct16 bool
	// tiles[dt][T] computes 4 weight rows × T tokens, for weight dtype
	// index dt (F32, F16, BF16; see dtIndex) and T = 1..wide.
	tiles [3][]tileFn
	wide  int
	// gemv[dt], when set, computes out[j] for 4·nblk consecutive weight
	// rows and one token (decode) in one call; k a multiple of kStep.
	gemv  [3]gemvFn
	dot   func(a, b []float32) float32 // len(b) >= len(a)
	axpy  func(y []float32, a float32, x []float32)
	scale func(y []float32, a float32)
	// accum adds Σ_p w[p]·v[p·hd : p·hd+hd] to acc[:hd] (p < len(w)).
	accum func(acc, v, w []float32, hd int)
	// max returns the largest element of a non-empty x.
	max func(x []float32) float32
	// expScaled sets x[i] = exp(scale·x[i] − sub) and returns their sum.
	expScaled func(x []float32, scale, sub float32) float32
	// siluMul sets out[i] = silu(gate[i])·up[i] (out may alias either).
	siluMul func(out, gate, up []float32)
	// prefetch hints that the n bytes at p will be read soon (may do nothing).
	prefetch func(p unsafe.Pointer, n uintptr)
	bf16     func(dst []float32, src []uint16) // len(src) >= len(dst)
	f16      func(dst []float32, src []uint16)
}

// maxWide bounds kernels.wide (the result buffer of a tile).
const maxWide = 8

// simd is the implementation in use: the best this CPU supports, or the
// one named by the environment variable VSERVE_CPU_KERNELS (generic, avx2,
// avx512) when the CPU supports it, for comparisons.
var simd = chooseKernels(os.Getenv("VSERVE_CPU_KERNELS"))

func chooseKernels(name string) kernels {
	ks := platformKernels()
	for _, k := range ks {
		if k.name == name {
			return k
		}
	}
	return ks[len(ks)-1]
}

// KernelSet names the inner loops in use ("generic", "avx2", "avx512").
func KernelSet() string { return simd.name }

func dot(a, b []float32) float32               { return simd.dot(a, b) }
func axpy(y []float32, a float32, x []float32) { simd.axpy(y, a, x) }
func scaleInPlace(y []float32, a float32)      { simd.scale(y, a) }
func accumRows(acc, v, w []float32, hd int)    { simd.accum(acc, v, w, hd) }
func bf16ToF32(dst []float32, src []uint16)    { simd.bf16(dst, src) }
func f16ToF32(dst []float32, src []uint16)     { simd.f16(dst, src) }
