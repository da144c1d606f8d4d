package kernel_test

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"

	"github.com/vserve/vserve/runtime/kernel"
	_ "github.com/vserve/vserve/runtime/kernel/cpu"
)

func TestOpenUnknown(t *testing.T) {
	_, err := kernel.Open("no-such-backend", kernel.Options{})
	if !errors.Is(err, kernel.ErrUnknownBackend) {
		t.Fatalf("Open of an unknown name: %v, want ErrUnknownBackend", err)
	}
}

func TestNamesListsCPU(t *testing.T) {
	found := false
	for _, n := range kernel.Names() {
		found = found || n == "cpu"
	}
	if !found {
		t.Fatalf("Names() = %v, want it to include cpu", kernel.Names())
	}
}

func TestRegisterPanics(t *testing.T) {
	open := func(kernel.Options) (kernel.Backend, error) { return nil, errors.New("unused") }
	tests := []struct {
		name string
		reg  func()
	}{
		{"duplicate", func() { kernel.Register("cpu", open) }},
		{"nil open", func() { kernel.Register("kernel-test-nil", nil) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("Register did not panic")
				}
			}()
			tc.reg()
		})
	}
}

// fakeRegistrations makes each run's backend name unique: the registry is
// process-wide and refuses duplicates (go test -count=N reruns the test).
var fakeRegistrations atomic.Int64

func TestRegisterThenOpen(t *testing.T) {
	sentinel := errors.New("opened")
	name := fmt.Sprintf("kernel-test-fake-%d", fakeRegistrations.Add(1))
	kernel.Register(name, func(o kernel.Options) (kernel.Backend, error) {
		if o.Device != 3 {
			t.Errorf("options not passed: %+v", o)
		}
		return nil, sentinel
	})
	if _, err := kernel.Open(name, kernel.Options{Device: 3}); !errors.Is(err, sentinel) {
		t.Fatalf("Open: %v, want the open func's error", err)
	}
}

func TestDTypeSizes(t *testing.T) {
	for _, tc := range []struct {
		dt   kernel.DType
		size int
		name string
	}{{kernel.F32, 4, "f32"}, {kernel.F16, 2, "f16"}, {kernel.BF16, 2, "bf16"}, {kernel.I32, 4, "i32"}} {
		if tc.dt.Size() != tc.size || tc.dt.String() != tc.name {
			t.Errorf("%v: Size %d String %q", tc.dt, tc.dt.Size(), tc.dt.String())
		}
	}
}

func TestHalfConversions(t *testing.T) {
	inf := float32(math.Inf(1))
	tests := []struct {
		f    float32
		f16  uint16
		bf16 uint16
	}{
		{0, 0x0000, 0x0000},
		{1, 0x3c00, 0x3f80},
		{-2, 0xc000, 0xc000},
		{65504, 0x7bff, 0x4780},
		{65520, 0x7c00, 0x4780},                  // rounds to Inf in f16
		{5.960464477539063e-08, 0x0001, 0x3380},  // smallest f16 subnormal
		{2.9802322387695312e-08, 0x0000, 0x3300}, // half of it: ties to even (0)
		{1.0009765625, 0x3c01, 0x3f80},           // f16 exact; bf16 rounds down
		{1.00390625, 0x3c04, 0x3f80},             // bf16 tie to even
		{1.01171875, 0x3c0c, 0x3f82},             // bf16 tie to even, up
		{inf, 0x7c00, 0x7f80},
	}
	for _, tc := range tests {
		if got := kernel.F32ToF16(tc.f); got != tc.f16 {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", tc.f, got, tc.f16)
		}
		if got := kernel.F32ToBF16(tc.f); got != tc.bf16 {
			t.Errorf("F32ToBF16(%g) = %#04x, want %#04x", tc.f, got, tc.bf16)
		}
	}
	// Every finite f16 value converts to float32 and back unchanged.
	for h := range 0x10000 {
		b := uint16(h)
		if b&0x7c00 == 0x7c00 && b&0x3ff != 0 {
			if f := kernel.F16ToF32(b); f == f {
				t.Fatalf("F16ToF32(%#04x) = %g, want NaN", b, f)
			}
			continue
		}
		if got := kernel.F32ToF16(kernel.F16ToF32(b)); got != b {
			t.Fatalf("f16 %#04x round trip gives %#04x", b, got)
		}
		if got := kernel.F32ToBF16(kernel.BF16ToF32(b)); got != b && !(b&0x7f80 == 0x7f80 && b&0x7f != 0) {
			t.Fatalf("bf16 %#04x round trip gives %#04x", b, got)
		}
	}
	nan := float32(math.NaN())
	if f := kernel.BF16ToF32(kernel.F32ToBF16(nan)); f == f {
		t.Error("bf16 NaN lost")
	}
}

func TestSampleResultResetSizesAndReuses(t *testing.T) {
	var r kernel.SampleResult
	r.Reset([]kernel.SampleParams{{NumLogprobs: 2}, {NumLogprobs: -1}, {}})
	if len(r.Tokens) != 3 || len(r.Logprobs) != 3 || len(r.Ranks) != 3 || len(r.TopIDs[0]) != 2 || len(r.TopLogprobs[0]) != 2 ||
		len(r.TopIDs[1]) != 0 || len(r.TopIDs[2]) != 0 {
		t.Fatalf("sizes: %+v", r)
	}
	r.Logprobs[1], r.Ranks[1] = -3, 7
	tokens := r.Tokens
	r.Reset([]kernel.SampleParams{{}, {NumLogprobs: 1}})
	if &r.Tokens[0] != &tokens[0] {
		t.Error("a smaller batch reallocated Tokens")
	}
	if len(r.Tokens) != 2 || r.Logprobs[1] != 0 || r.Ranks[1] != 0 || len(r.TopIDs[1]) != 1 || len(r.TopIDs[0]) != 0 {
		t.Errorf("second reset: %+v", r)
	}
}
