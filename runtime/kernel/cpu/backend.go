package cpu

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/vserve/vserve/runtime/kernel"
)

// Name is the name the backend registers under.
const Name = "cpu"

func init() {
	kernel.Register(Name, func(o kernel.Options) (kernel.Backend, error) { return New(o) })
}

// Backend is the CPU backend. It is safe for use by one goroutine at a
// time per call; concurrent calls are allowed and run without the pool.
type Backend struct {
	pool   *pool
	closed bool
}

var (
	_ kernel.Backend    = (*Backend)(nil)
	_ kernel.HostMapper = (*Backend)(nil)
)

// New opens a CPU backend with opts.Threads workers (0 = GOMAXPROCS).
func New(opts kernel.Options) (*Backend, error) {
	n := opts.Threads
	if n < 0 {
		return nil, fmt.Errorf("cpu: negative thread count %d", n)
	}
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return &Backend{pool: newPool(n)}, nil
}

// Name returns "cpu".
func (be *Backend) Name() string { return Name }

// ComputeDType is F32: activations and the KV cache are float32.
func (be *Backend) ComputeDType() kernel.DType { return kernel.F32 }

// Threads is the number of threads ops are split over.
func (be *Backend) Threads() int { return be.pool.size() }

// Close stops the worker pool. Buffers stay readable (they are Go memory).
func (be *Backend) Close() error {
	if be.closed {
		return errors.New("cpu: backend closed twice")
	}
	be.closed = true
	be.pool.close()
	return nil
}

// Sync is a no-op: every op has finished when it returns.
func (be *Backend) Sync() error { return nil }

// buffer is host memory; exactly one of the slices is set, by dtype.
type buffer struct {
	dt  kernel.DType
	f32 []float32
	u16 []uint16
	i32 []int32
	reg *region // the memory outside the Go heap the slice is in, if any: views keep it mapped
}

// region is memory outside the Go heap (mapAnonymous), unmapped once no
// buffer refers to it.
type region struct{ mem []byte }

// offHeapBytes is the size from which Alloc takes memory outside the Go
// heap: the KV cache, and a model's activations at long contexts. On the
// heap, a KV cache of several GB is live data that sets the garbage
// collector's goal at twice its size, so a server collected nothing until
// it had allocated as much again (a 15M-shape server with a 2 GiB cache:
// no collection in 1200 requests, and garbage could grow the process by
// the cache's size); and every allocation between collections came from
// memory not touched before.
const offHeapBytes = 1 << 20

func (b *buffer) DType() kernel.DType { return b.dt }

func (b *buffer) Len() int {
	switch b.dt {
	case kernel.F32:
		return len(b.f32)
	case kernel.I32:
		return len(b.i32)
	}
	return len(b.u16)
}

// Slice returns a view of [off, off+n); it panics when out of range, like
// slicing a Go slice.
func (b *buffer) Slice(off, n int) kernel.Buffer {
	if off < 0 || n < 0 || off+n > b.Len() {
		panic(fmt.Sprintf("cpu: Slice(%d, %d) of a buffer of %d elements", off, n, b.Len()))
	}
	v := &buffer{dt: b.dt, reg: b.reg}
	switch b.dt {
	case kernel.F32:
		v.f32 = b.f32[off : off+n : off+n]
	case kernel.I32:
		v.i32 = b.i32[off : off+n : off+n]
	default:
		v.u16 = b.u16[off : off+n : off+n]
	}
	return v
}

// Alloc returns a zeroed buffer of n elements; from offHeapBytes on, its
// memory is outside the Go heap.
func (be *Backend) Alloc(dt kernel.DType, n int) (kernel.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("cpu: Alloc of %d elements", n)
	}
	if dt <= kernel.I32 && n*dt.Size() >= offHeapBytes {
		if r := mapAnonymous(n * dt.Size()); r != nil {
			return wrapRegion(dt, n, r), nil
		}
	}
	b := &buffer{dt: dt}
	switch dt {
	case kernel.F32:
		b.f32 = make([]float32, n)
	case kernel.I32:
		b.i32 = make([]int32, n)
	case kernel.F16, kernel.BF16:
		b.u16 = make([]uint16, n)
	default:
		return nil, fmt.Errorf("cpu: Alloc of unknown %v", dt)
	}
	return b, nil
}

// wrapRegion is a buffer of n elements of dt over r.
func wrapRegion(dt kernel.DType, n int, r *region) *buffer {
	b := bufferAt(dt, unsafe.Pointer(unsafe.SliceData(r.mem)), n)
	b.reg = r
	return b
}

// bufferAt is a buffer of n elements of dt at p, aligned for dt.
func bufferAt(dt kernel.DType, p unsafe.Pointer, n int) *buffer {
	b := &buffer{dt: dt}
	switch dt {
	case kernel.F32:
		b.f32 = unsafe.Slice((*float32)(p), n)
	case kernel.I32:
		b.i32 = unsafe.Slice((*int32)(p), n)
	default:
		b.u16 = unsafe.Slice((*uint16)(p), n)
	}
	return b
}

// Free drops nothing: heap memory is the garbage collector's, and memory
// outside it is unmapped once no buffer or view refers to it.
func (be *Backend) Free(kernel.Buffer) {}

// MapHost wraps data (little-endian elements of dt) without copying when it
// is aligned to the element size; unaligned data is copied once.
func (be *Backend) MapHost(dt kernel.DType, data []byte) (kernel.Buffer, error) {
	size := dt.Size()
	if dt > kernel.I32 {
		return nil, fmt.Errorf("cpu: MapHost of unknown %v", dt)
	}
	if len(data)%size != 0 {
		return nil, fmt.Errorf("cpu: MapHost of %d bytes, not a multiple of the %v size %d", len(data), dt, size)
	}
	n := len(data) / size
	if n == 0 {
		return be.Alloc(dt, 0)
	}
	p := unsafe.Pointer(unsafe.SliceData(data))
	if uintptr(p)%uintptr(size) != 0 {
		cp := make([]uint64, (len(data)+7)/8)
		p = unsafe.Pointer(unsafe.SliceData(cp))
		copy(unsafe.Slice((*byte)(p), len(data)), data)
	}
	return bufferAt(dt, p, n), nil
}

// Upload copies src into dst from element 0: []float32 into F32 (or,
// converting, into F16/BF16), []int32 into I32, []uint16 raw bits into
// F16/BF16. len(src) may be less than dst.Len().
func (be *Backend) Upload(dst kernel.Buffer, src any) error {
	d, err := host(dst)
	if err != nil {
		return err
	}
	n, ok := srcLen(src)
	if !ok {
		return fmt.Errorf("cpu: Upload from %T into %v", src, d.dt)
	}
	if n > d.Len() {
		return fmt.Errorf("cpu: Upload of %d elements into a %v buffer of %d", n, d.dt, d.Len())
	}
	switch s := src.(type) {
	case []float32:
		switch d.dt {
		case kernel.F32:
			copy(d.f32, s)
			return nil
		case kernel.F16, kernel.BF16:
			for i, v := range s {
				d.u16[i] = kernel.FromF32(d.dt, v)
			}
			return nil
		}
	case []int32:
		if d.dt == kernel.I32 {
			copy(d.i32, s)
			return nil
		}
	case []uint16:
		if d.dt == kernel.F16 || d.dt == kernel.BF16 {
			copy(d.u16, s)
			return nil
		}
	}
	return fmt.Errorf("cpu: Upload from %T into %v", src, d.dt)
}

func srcLen(src any) (int, bool) {
	switch s := src.(type) {
	case []float32:
		return len(s), true
	case []int32:
		return len(s), true
	case []uint16:
		return len(s), true
	}
	return 0, false
}

// Download copies all of src into dst: F32 (or F16/BF16, converted) into
// []float32, I32 into []int32, F16/BF16 raw bits into []uint16. dst must
// hold at least src.Len() elements.
func (be *Backend) Download(dst any, src kernel.Buffer) error {
	s, err := host(src)
	if err != nil {
		return err
	}
	n, ok := srcLen(dst)
	if !ok {
		return fmt.Errorf("cpu: Download from %v into %T", s.dt, dst)
	}
	if n < s.Len() {
		return fmt.Errorf("cpu: Download of %d %v elements into %d", s.Len(), s.dt, n)
	}
	switch d := dst.(type) {
	case []float32:
		switch s.dt {
		case kernel.F32:
			copy(d, s.f32)
			return nil
		case kernel.F16, kernel.BF16:
			for i, h := range s.u16 {
				d[i] = kernel.ToF32(s.dt, h)
			}
			return nil
		}
	case []int32:
		if s.dt == kernel.I32 {
			copy(d, s.i32)
			return nil
		}
	case []uint16:
		if s.dt == kernel.F16 || s.dt == kernel.BF16 {
			copy(d, s.u16)
			return nil
		}
	}
	return fmt.Errorf("cpu: Download from %v into %T", s.dt, dst)
}

// host unwraps a Buffer made by a CPU backend.
func host(b kernel.Buffer) (*buffer, error) {
	hb, ok := b.(*buffer)
	if !ok || hb == nil {
		return nil, fmt.Errorf("cpu: buffer %T was not made by the cpu backend", b)
	}
	return hb, nil
}

// f32s returns the float32 data of an F32 buffer holding at least n
// elements, sliced to n.
func f32s(b kernel.Buffer, n int, what string) ([]float32, error) {
	hb, err := host(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if hb.dt != kernel.F32 {
		return nil, fmt.Errorf("cpu: %s is %v, want f32", what, hb.dt)
	}
	if n < 0 || len(hb.f32) < n {
		return nil, fmt.Errorf("cpu: %s holds %d elements, need %d", what, len(hb.f32), n)
	}
	return hb.f32[:n], nil
}

// i32s is f32s for I32 buffers.
func i32s(b kernel.Buffer, n int, what string) ([]int32, error) {
	hb, err := host(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if hb.dt != kernel.I32 {
		return nil, fmt.Errorf("cpu: %s is %v, want i32", what, hb.dt)
	}
	if n < 0 || len(hb.i32) < n {
		return nil, fmt.Errorf("cpu: %s holds %d elements, need %d", what, len(hb.i32), n)
	}
	return hb.i32[:n], nil
}

// weights returns a float buffer of any float dtype holding at least n
// elements (F32, F16 or BF16), for weights read by ops.
func weights(b kernel.Buffer, n int, what string) (*buffer, error) {
	hb, err := host(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if hb.dt == kernel.I32 {
		return nil, fmt.Errorf("cpu: %s is i32, want a float type", what)
	}
	if n < 0 || hb.Len() < n {
		return nil, fmt.Errorf("cpu: %s holds %d elements, need %d", what, hb.Len(), n)
	}
	return hb, nil
}

// rowF32 converts elements [off, off+n) of a float buffer into dst.
func (b *buffer) rowF32(dst []float32, off int) {
	switch b.dt {
	case kernel.F32:
		copy(dst, b.f32[off:off+len(dst)])
	case kernel.BF16:
		bf16ToF32(dst, b.u16[off:off+len(dst)])
	case kernel.F16:
		f16ToF32(dst, b.u16[off:off+len(dst)])
	}
}

// f32All returns all the float32 data of an F32 buffer.
func f32All(b kernel.Buffer, what string) ([]float32, error) {
	hb, err := host(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if hb.dt != kernel.F32 {
		return nil, fmt.Errorf("cpu: %s is %v, want f32", what, hb.dt)
	}
	return hb.f32, nil
}

// f32Row returns elements [off, off+n) as float32: the buffer's own memory
// for F32, else converted into *scratch (grown as needed).
func (b *buffer) f32Row(off, n int, scratch *[]float32) []float32 {
	if b.dt == kernel.F32 {
		return b.f32[off : off+n]
	}
	if cap(*scratch) < n {
		*scratch = make([]float32, n)
	}
	row := (*scratch)[:n]
	b.rowF32(row, off)
	return row
}
