//go:build cuda || cudaemu

package cuda

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"

	"github.com/vserve/vserve/runtime/kernel"
)

// buffer is a range of device memory. Views made by Slice share the
// allocation of their parent; only the buffer Alloc returned frees it.
type buffer struct {
	ptr  uint64 // device address of element 0
	dt   kernel.DType
	n    int
	root *block // the allocation; nil for views and empty buffers
	be   *Backend
}

func (b *buffer) DType() kernel.DType { return b.dt }
func (b *buffer) Len() int            { return b.n }
func (b *buffer) bytes() int64        { return int64(b.n) * int64(b.dt.Size()) }

// Slice returns a view of elements [off, off+n). It panics on a range
// outside the buffer, like slicing a Go slice.
func (b *buffer) Slice(off, n int) kernel.Buffer {
	if off < 0 || n < 0 || off+n > b.n {
		panic(fmt.Sprintf("cuda: Slice(%d, %d) of a buffer of %d", off, n, b.n))
	}
	return &buffer{ptr: b.ptr + uint64(off)*uint64(b.dt.Size()), dt: b.dt, n: n, be: b.be}
}

// block is one device allocation, rounded to its size class.
type block struct {
	ptr   uint64
	class int64
	freed bool
}

// allocator caches freed device memory by size class so that per-step
// allocations do not call cuMemAlloc (which synchronises). All work runs
// on one stream in submission order, so memory freed after enqueuing the
// ops that use it can be handed to later ops at once.
type allocator struct {
	be    *Backend
	mu    sync.Mutex
	cache map[int64][]uint64
	held  int64 // bytes in live and cached blocks
}

// sizeClass rounds a request: powers of two up to 4 MiB, then 2 MiB steps.
func sizeClass(n int64) int64 {
	const small, step = 4 << 20, 2 << 20
	if n <= 512 {
		return 512
	}
	if n <= small {
		return 1 << (64 - bits.LeadingZeros64(uint64(n-1)))
	}
	return (n + step - 1) / step * step
}

func (a *allocator) get(bytes int64) (*block, error) {
	class := sizeClass(bytes)
	a.mu.Lock()
	if list := a.cache[class]; len(list) > 0 {
		p := list[len(list)-1]
		a.cache[class] = list[:len(list)-1]
		a.mu.Unlock()
		return &block{ptr: p, class: class}, nil
	}
	a.mu.Unlock()
	var p uint64
	drv := a.be.drv
	err := a.be.dev.do(func() error {
		var e error
		p, e = drv.alloc(class)
		if e != nil {
			// Out of memory: return the cache to the driver and retry once.
			if rerr := a.releaseCached(); rerr != nil {
				return errors.Join(e, rerr)
			}
			p, e = drv.alloc(class)
		}
		if e != nil {
			return e
		}
		// Fresh memory starts zeroed, so that nothing reads stale bit
		// patterns (NaN) from a new KV arena; reused blocks are not cleared.
		return drv.zero(p, class)
	})
	if err != nil {
		return nil, fmt.Errorf("cuda: allocate %d bytes: %w", class, err)
	}
	a.mu.Lock()
	a.held += class
	a.mu.Unlock()
	return &block{ptr: p, class: class}, nil
}

func (a *allocator) put(b *block) {
	if b == nil || b.freed {
		return
	}
	b.freed = true
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cache == nil {
		a.cache = map[int64][]uint64{}
	}
	a.cache[b.class] = append(a.cache[b.class], b.ptr)
}

// releaseCached frees the cached blocks (device goroutine).
func (a *allocator) releaseCached() error {
	a.mu.Lock()
	cache := a.cache
	a.cache = nil
	a.mu.Unlock()
	var errs []error
	for class, list := range cache {
		for _, p := range list {
			errs = append(errs, a.be.drv.free(p))
			a.mu.Lock()
			a.held -= class
			a.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// releaseAll frees the cache at close (device goroutine). Live buffers
// die with the context.
func (a *allocator) releaseAll() error { return a.releaseCached() }

// Alloc returns an uninitialised buffer of n elements of dt.
func (be *Backend) Alloc(dt kernel.DType, n int) (kernel.Buffer, error) {
	return be.allocBuf(dt, n)
}

func (be *Backend) allocBuf(dt kernel.DType, n int) (*buffer, error) {
	switch dt {
	case kernel.F32, kernel.F16, kernel.BF16, kernel.I32:
	default:
		return nil, fmt.Errorf("cuda: Alloc of unknown dtype %v", dt)
	}
	if n < 0 {
		return nil, fmt.Errorf("cuda: Alloc of %d elements", n)
	}
	if n == 0 {
		return &buffer{dt: dt, be: be}, nil
	}
	blk, err := be.alloc.get(int64(n) * int64(dt.Size()))
	if err != nil {
		return nil, err
	}
	return &buffer{ptr: blk.ptr, dt: dt, n: n, root: blk, be: be}, nil
}

// Free returns b's memory for reuse by later allocations (ops already
// enqueued that use it still see it: they run first). Views are ignored.
func (be *Backend) Free(b kernel.Buffer) {
	if cb, ok := b.(*buffer); ok && cb.be == be && cb.root != nil {
		be.alloc.put(cb.root)
	}
}

// CachedBytes is the device memory this backend holds in buffers and in
// its allocation cache.
func (be *Backend) CachedBytes() int64 {
	be.alloc.mu.Lock()
	defer be.alloc.mu.Unlock()
	return be.alloc.held
}

// own checks that b is a buffer of this backend.
func (be *Backend) own(op string, b kernel.Buffer) (*buffer, error) {
	cb, ok := b.(*buffer)
	if !ok || cb == nil {
		return nil, fmt.Errorf("cuda: %s: buffer %T is not a CUDA buffer", op, b)
	}
	if cb.be != be {
		return nil, fmt.Errorf("cuda: %s: buffer of another backend", op)
	}
	return cb, nil
}
