//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"unsafe"

	"github.com/vserve/vserve/runtime/kernel"
)

// hostBytes returns the address and element count of a host slice that
// matches dt ([]float32 for F32, []int32 for I32, []uint16 raw bits for
// F16 and BF16).
func hostBytes(dt kernel.DType, v any) (unsafe.Pointer, int, error) {
	switch s := v.(type) {
	case []float32:
		if dt == kernel.F32 {
			return unsafe.Pointer(unsafe.SliceData(s)), len(s), nil
		}
	case []int32:
		if dt == kernel.I32 {
			return unsafe.Pointer(unsafe.SliceData(s)), len(s), nil
		}
	case []uint16:
		if dt == kernel.F16 || dt == kernel.BF16 {
			return unsafe.Pointer(unsafe.SliceData(s)), len(s), nil
		}
	}
	return nil, 0, fmt.Errorf("cuda: host %T does not match a %v buffer", v, dt)
}

// Upload copies src into dst from element 0. It returns once src may be
// reused; it is ordered after every op queued before it.
func (be *Backend) Upload(dst kernel.Buffer, src any) error {
	d, err := be.own("Upload", dst)
	if err != nil {
		return err
	}
	p, n, err := hostBytes(d.dt, src)
	if err != nil {
		return err
	}
	if n > d.n {
		return fmt.Errorf("cuda: Upload of %d elements into a buffer of %d", n, d.n)
	}
	if n == 0 {
		return nil
	}
	bytes := int64(n) * int64(d.dt.Size())
	return be.dev.do(func() error {
		// Synchronous copy on the legacy stream: ordered after the work of
		// our (blocking) stream and before what is queued after it.
		if err := be.drv.htod(d.ptr, p, bytes); err != nil {
			return fmt.Errorf("cuda: Upload: %w", err)
		}
		return nil
	})
}

// Download copies src into dst, which must hold at least src.Len()
// elements, after every queued op; it reports an earlier asynchronous
// failure instead of copying.
func (be *Backend) Download(dst any, src kernel.Buffer) error {
	s, err := be.own("Download", src)
	if err != nil {
		return err
	}
	p, n, err := hostBytes(s.dt, dst)
	if err != nil {
		return err
	}
	if n < s.n {
		return fmt.Errorf("cuda: Download of %d elements into %d", s.n, n)
	}
	if s.n == 0 {
		return nil
	}
	return be.dev.do(func() error {
		if err := be.drv.sync(); err != nil {
			return fmt.Errorf("cuda: stream: %w", err)
		}
		if err := be.dev.takeAsyncErr(); err != nil {
			return err
		}
		if err := be.drv.dtoh(p, s.ptr, s.bytes()); err != nil {
			return fmt.Errorf("cuda: Download: %w", err)
		}
		return nil
	})
}

// uploadBytes copies raw host bytes into device memory at ptr (device
// goroutine not required; synchronous).
func (be *Backend) uploadBytes(ptr uint64, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	return be.dev.do(func() error {
		return be.drv.htod(ptr, unsafe.Pointer(unsafe.SliceData(src)), int64(len(src)))
	})
}

// downloadBytes waits for the queued work and copies device bytes at ptr
// into dst, reporting an earlier asynchronous failure first.
func (be *Backend) downloadBytes(dst []byte, ptr uint64) error {
	return be.dev.do(func() error {
		if err := be.drv.sync(); err != nil {
			return fmt.Errorf("cuda: stream: %w", err)
		}
		if err := be.dev.takeAsyncErr(); err != nil {
			return err
		}
		if len(dst) == 0 {
			return nil
		}
		return be.drv.dtoh(unsafe.Pointer(unsafe.SliceData(dst)), ptr, int64(len(dst)))
	})
}
