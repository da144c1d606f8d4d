package cpu

import (
	"encoding/binary"
	"math"
	"runtime"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

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

func TestMapHost(t *testing.T) {
	be := open(t, 1)
	backing := make([]uint64, 4) // 8-byte aligned
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&backing[0])), 32)
	binary.LittleEndian.PutUint32(raw[0:], math.Float32bits(1.5))
	binary.LittleEndian.PutUint32(raw[4:], math.Float32bits(-2))
	buf, err := be.MapHost(kernel.F32, raw[:8])
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, 2)
	if err := be.Download(got, buf); err != nil || got[0] != 1.5 || got[1] != -2 {
		t.Fatalf("mapped f32: %v %v", got, err)
	}
	// No copy: a change to the bytes shows through the buffer.
	binary.LittleEndian.PutUint32(raw[0:], math.Float32bits(7))
	if err := be.Download(got, buf); err != nil || got[0] != 7 {
		t.Fatalf("mapped f32 after a write to the bytes: %v %v", got, err)
	}
	// Unaligned bytes are copied, still correct.
	binary.LittleEndian.PutUint32(raw[1:], math.Float32bits(3.25))
	ub, err := be.MapHost(kernel.F32, raw[1:5])
	if err != nil {
		t.Fatal(err)
	}
	one := make([]float32, 1)
	if err := be.Download(one, ub); err != nil || one[0] != 3.25 {
		t.Fatalf("unaligned f32: %v %v", one, err)
	}
	if _, err := be.MapHost(kernel.F32, raw[:6]); err == nil {
		t.Error("MapHost of 6 bytes as f32: no error")
	}
	if _, err := be.MapHost(kernel.DType(9), raw[:8]); err == nil {
		t.Error("MapHost of an unknown dtype: no error")
	}
	if b, err := be.MapHost(kernel.BF16, nil); err != nil || b.Len() != 0 {
		t.Errorf("MapHost of no bytes: %v", err)
	}
}

func TestOpErrors(t *testing.T) {
	be := open(t, 1)
	f, _ := be.Alloc(kernel.F32, 8)
	i, _ := be.Alloc(kernel.I32, 8)
	tests := []struct {
		name string
		err  error
	}{
		{"MatMul short out", be.MatMul(f.Slice(0, 3), f, f, 2, 2, 2)},
		{"MatMul i32 weights", be.MatMul(f, f, i, 1, 2, 2)},
		{"MatMul negative", be.MatMul(f, f, f, -1, 2, 2)},
		{"Embedding id out of range", func() error {
			_ = be.Upload(i, []int32{5})
			return be.Embedding(f, f, i, 1, 4) // table of 2 rows
		}()},
		{"GatherRows row out of range", func() error {
			_ = be.Upload(i, []int32{9})
			return be.GatherRows(f, f, i, 1, 4)
		}()},
		{"RoPE odd head dim", be.RoPE(f, f, i, f, 1, 1, 1, 3)},
		{"ReshapeAndCache slot out of range", func() error {
			_ = be.Upload(i, []int32{100})
			return be.ReshapeAndCache(f, f, f, f, i, 1, 1, 4, 1)
		}()},
		{"PagedAttention nil meta", be.PagedAttention(f, f, f, f, nil)},
		{"foreign buffer", be.Add(f, fakeBuffer{}, f, 1)},
	}
	for _, tc := range tests {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

type fakeBuffer struct{}

func (fakeBuffer) DType() kernel.DType              { return kernel.F32 }
func (fakeBuffer) Len() int                         { return 1 }
func (f fakeBuffer) Slice(off, n int) kernel.Buffer { return f }

func TestOpsAfterCloseRunInline(t *testing.T) {
	be, err := New(kernel.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	x, _ := be.Alloc(kernel.F32, 64*64)
	out, _ := be.Alloc(kernel.F32, 64*64)
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if err := be.MatMul(out, x, x, 64, 64, 64); err != nil {
		t.Fatalf("MatMul after Close: %v", err)
	}
}

// TestLargeBuffersAreOutsideTheHeap: a buffer of offHeapBytes or more (a
// KV cache) is zeroed memory outside the Go heap, which its views keep,
// and smaller ones stay on the heap.
func TestLargeBuffersAreOutsideTheHeap(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no anonymous mappings here")
	}
	be, err := New(kernel.Options{Threads: 1})
	require.NoError(t, err)
	defer be.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 64 << 20 / 4 // 64 MiB of f32
	big, err := be.Alloc(kernel.F32, n)
	require.NoError(t, err)
	runtime.ReadMemStats(&after)
	require.Less(t, after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc), uint64(1<<20), "the heap did not take the 64 MiB")
	require.NotNil(t, big.(*buffer).reg)

	view := big.Slice(n-8, 8)
	require.Same(t, big.(*buffer).reg, view.(*buffer).reg, "a view keeps the mapping")
	require.NoError(t, be.Upload(view, []float32{1, 2, 3}))
	got := make([]float32, n)
	require.NoError(t, be.Download(got, big))
	require.Equal(t, []float32{1, 2, 3, 0, 0, 0, 0, 0}, got[n-8:])
	for _, v := range got[:n-8] {
		if v != 0 {
			t.Fatal("a new buffer is zeroed")
		}
	}

	small, err := be.Alloc(kernel.F32, 1024)
	require.NoError(t, err)
	require.Nil(t, small.(*buffer).reg, "small buffers stay on the heap")
}
