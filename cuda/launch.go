//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"math"
)

// arg is one kernel argument in its own 8-byte slot. gorgonia.org/cu's
// Launch copies 8 bytes from every argument pointer; the kernels declare
// only pointers, long long (8 bytes), int and float (4 bytes, read from the
// low half of the slot, little endian), so building arguments only through
// the constructors below makes a short read or a mis-sized argument
// impossible.
type arg struct{ v uint64 }

// ptrArg passes a device address (a kernel pointer parameter).
func ptrArg(p uint64) arg { return arg{p} }

// bufArg passes a buffer's device address.
func bufArg(b *buffer) arg { return arg{b.ptr} }

// i32Arg passes an int kernel parameter; the value must fit in int32.
func i32Arg(v int) arg { return arg{uint64(uint32(int32(v)))} }

// i64Arg passes a long long kernel parameter.
func i64Arg(v int) arg { return arg{uint64(int64(v))} }

// f32Arg passes a float kernel parameter.
func f32Arg(v float32) arg { return arg{uint64(math.Float32bits(v))} }

// dtArg passes a dtype code (an int parameter).
func dtArg(b *buffer) arg { return i32Arg(int(b.dt)) }

// dim3 is a grid or block shape.
type dim3 struct{ x, y, z int }

// kernelFunc is a loaded kernel (the driver's handle) with its name.
type kernelFunc struct {
	name string
	fn   any
}

// launch enqueues fn on the backend's stream. The argument slots are
// copied into the closure, so the caller's slice may be reused.
func (be *Backend) launch(k kernelFunc, grid, block dim3, smem int, args ...arg) error {
	if grid.x <= 0 || grid.y <= 0 || grid.z <= 0 {
		return nil // nothing to do
	}
	if grid.x > math.MaxInt32 || grid.y > 65535 || grid.z > 65535 {
		return fmt.Errorf("cuda: %s: grid %v too large", k.name, grid)
	}
	vals := make([]uint64, len(args))
	for i, a := range args {
		vals[i] = a.v
	}
	drv := be.drv
	return be.dev.enqueue(k.name, func() error {
		return drv.launch(k.fn, k.name, grid, block, smem, vals)
	})
}

// gridFor returns a 1-D grid-stride launch shape for n elements.
func (be *Backend) gridFor(n int) (dim3, dim3) {
	const threads = 256
	blocks := (n + threads - 1) / threads
	blocks = max(1, min(blocks, be.numSMs*16))
	return dim3{blocks, 1, 1}, dim3{threads, 1, 1}
}
