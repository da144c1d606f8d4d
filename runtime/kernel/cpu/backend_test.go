package cpu

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/kernel/kerneltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(tb testing.TB, threads int) *Backend {
	tb.Helper()
	be, err := New(kernel.Options{Threads: threads})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := be.Close(); err != nil {
			tb.Error(err)
		}
	})
	return be
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name    string
		threads int
	}{{"threads=1", 1}, {"threads=3", 3}} {
		t.Run(tc.name, func(t *testing.T) { kerneltest.Run(t, open(t, tc.threads)) })
	}
}

// TestConformanceKernelSets runs the suite on every kernel set this CPU
// supports (the portable Go loops always).
func TestConformanceKernelSets(t *testing.T) {
	saved := simd
	defer func() { simd = saved }()
	for _, k := range platformKernels() {
		t.Run(k.name, func(t *testing.T) {
			simd = k
			kerneltest.Run(t, open(t, 2))
		})
	}
}

func TestRegistered(t *testing.T) {
	be, err := kernel.Open(Name, kernel.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if be.Name() != "cpu" || be.ComputeDType() != kernel.F32 {
		t.Errorf("Name %q ComputeDType %v", be.Name(), be.ComputeDType())
	}
	if _, ok := be.(kernel.HostMapper); !ok {
		t.Error("cpu backend is not a HostMapper")
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err == nil {
		t.Error("second Close: no error")
	}
}
