package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vserve/vserve/runtime/kernel"
)

// defaultSeed makes runs reproducible unless KERNELTEST_SEED asks otherwise.
const defaultSeed = 20261128

// seed returns the generator seed: KERNELTEST_SEED (a number, or "random"
// for a fresh one) or defaultSeed.
func seed(tb testing.TB) uint64 {
	s := uint64(defaultSeed)
	switch env := os.Getenv("KERNELTEST_SEED"); env {
	case "":
	case "random":
		s = uint64(time.Now().UnixNano())
	default:
		v, err := strconv.ParseUint(env, 10, 64)
		if err != nil {
			tb.Fatalf("KERNELTEST_SEED=%q: %v", env, err)
		}
		s = v
	}
	tb.Logf("kerneltest seed %d (set KERNELTEST_SEED to change)", s)
	return s
}

// harness wraps a backend with helpers that fail the test on any error.
type harness struct {
	tb  testing.TB
	be  kernel.Backend
	rng *rand.Rand
}

func newHarness(tb testing.TB, be kernel.Backend, s uint64) *harness {
	return &harness{tb: tb, be: be, rng: rand.New(rand.NewPCG(s, s^0x5eed))}
}

// normals returns n values from N(0, sd²).
func (h *harness) normals(n int, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(h.rng.NormFloat64() * sd)
	}
	return v
}

// alloc allocates or fails.
func (h *harness) alloc(dt kernel.DType, n int) kernel.Buffer {
	h.tb.Helper()
	b, err := h.be.Alloc(dt, n)
	if err != nil {
		h.tb.Fatalf("Alloc(%v, %d): %v", dt, n, err)
	}
	return b
}

// round returns v as stored in dt (identity for F32).
func round(dt kernel.DType, v []float32) []float32 {
	if dt == kernel.F32 {
		return v
	}
	r := make([]float32, len(v))
	for i, x := range v {
		r[i] = kernel.ToF32(dt, kernel.FromF32(dt, x))
	}
	return r
}

// upload copies float values into a new buffer of dt and returns it with
// the values as the backend stores them.
func (h *harness) upload(dt kernel.DType, v []float32) (kernel.Buffer, []float32) {
	h.tb.Helper()
	b := h.alloc(dt, len(v))
	h.write(b, v)
	return b, round(dt, v)
}

// write stores float values into an existing float buffer.
func (h *harness) write(b kernel.Buffer, v []float32) {
	h.tb.Helper()
	var src any = v
	if dt := b.DType(); dt != kernel.F32 {
		bits := make([]uint16, len(v))
		for i, x := range v {
			bits[i] = kernel.FromF32(dt, x)
		}
		src = bits
	}
	if err := h.be.Upload(b, src); err != nil {
		h.tb.Fatalf("Upload(%v, %d elements): %v", b.DType(), len(v), err)
	}
}

// act uploads activations in the backend's compute dtype.
func (h *harness) act(v []float32) (kernel.Buffer, []float32) {
	h.tb.Helper()
	return h.upload(h.be.ComputeDType(), v)
}

// ints uploads int32 values.
func (h *harness) ints(v []int32) kernel.Buffer {
	h.tb.Helper()
	b := h.alloc(kernel.I32, max(len(v), 1))
	if err := h.be.Upload(b, v); err != nil {
		h.tb.Fatalf("Upload(i32, %d elements): %v", len(v), err)
	}
	return b.Slice(0, len(v))
}

// poisoned returns an activation buffer of n elements filled with NaN.
func (h *harness) poisoned(n int) kernel.Buffer {
	h.tb.Helper()
	b := h.alloc(h.be.ComputeDType(), n)
	h.poison(b)
	return b
}

func (h *harness) poison(b kernel.Buffer) {
	h.tb.Helper()
	nan := make([]float32, b.Len())
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	h.write(b, nan)
}

// read downloads a float buffer as float32.
func (h *harness) read(b kernel.Buffer) []float32 {
	h.tb.Helper()
	if err := h.be.Sync(); err != nil {
		h.tb.Fatalf("Sync: %v", err)
	}
	out := make([]float32, b.Len())
	switch b.DType() {
	case kernel.F32:
		if err := h.be.Download(out, b); err != nil {
			h.tb.Fatalf("Download: %v", err)
		}
	case kernel.F16, kernel.BF16:
		bits := make([]uint16, b.Len())
		if err := h.be.Download(bits, b); err != nil {
			h.tb.Fatalf("Download: %v", err)
		}
		for i, x := range bits {
			out[i] = kernel.ToF32(b.DType(), x)
		}
	default:
		h.tb.Fatalf("read of a %v buffer", b.DType())
	}
	return out
}

// readInts downloads an I32 buffer.
func (h *harness) readInts(b kernel.Buffer) []int32 {
	h.tb.Helper()
	out := make([]int32, b.Len())
	if err := h.be.Download(out, b); err != nil {
		h.tb.Fatalf("Download: %v", err)
	}
	return out
}

// ok fails the test on a non-nil error from an op.
func (h *harness) ok(op string, err error) {
	h.tb.Helper()
	if err != nil {
		h.tb.Fatalf("%s: %v", op, err)
	}
	if err := h.be.Sync(); err != nil {
		h.tb.Fatalf("%s: Sync: %v", op, err)
	}
}

// tol is the normalised-error tolerance of an op with the given relative
// difficulty (1 for elementwise ops, more for long reductions).
func (h *harness) tol(difficulty float64) float64 {
	switch h.be.ComputeDType() {
	case kernel.F32:
		return 2e-6 * difficulty
	case kernel.F16:
		// Dominated by rounding the output to 11 bits (RMS ≈ 2⁻¹²).
		return 8e-4 * (1 + difficulty/10)
	}
	// bfloat16: rounding the output to 8 bits (RMS ≈ 2⁻⁹·⁵).
	return 6e-3 * (1 + difficulty/10)
}

// NormErr is ‖got − want‖ / ‖want‖ (‖got‖ when want is zero); NaN in got
// yields NaN, which no tolerance accepts.
func NormErr(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// check compares got with want by normalised error, reporting the first
// differing elements on failure.
func (h *harness) check(what string, got []float32, want []float64, tol float64) {
	h.tb.Helper()
	if len(got) < len(want) {
		h.tb.Fatalf("%s: got %d elements, want %d", what, len(got), len(want))
	}
	e := NormErr(got, want)
	if e <= tol {
		return
	}
	msg := fmt.Sprintf("%s: normalised error %.3g > %.3g", what, e, tol)
	shown := 0
	for i, w := range want {
		g := float64(got[i])
		if math.IsNaN(g) || math.Abs(g-w) > tol*(math.Abs(w)+1) {
			msg += fmt.Sprintf("\n  [%d] got %g want %g", i, g, w)
			if shown++; shown == 5 {
				break
			}
		}
	}
	h.tb.Error(msg)
}

func f64s(v []float32) []float64 {
	r := make([]float64, len(v))
	for i, x := range v {
		r[i] = float64(x)
	}
	return r
}
