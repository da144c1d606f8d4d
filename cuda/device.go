//go:build cuda || cudaemu

package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
)

// device runs every driver call on one goroutine locked to its OS thread,
// where the CUDA context is current. Calls come in two kinds:
//   - do: synchronous; the caller waits for the result (allocation,
//     copies, Sync, module loading);
//   - enqueue: asynchronous kernel launches and GEMMs; the caller returns
//     at once and the first failure is kept and reported by the next
//     Sync or Download (the kernel.Backend contract lets ops run
//     asynchronously until Sync). Work runs in submission order.
type device struct {
	work chan func()
	quit chan struct{}
	wg   sync.WaitGroup

	// asyncErr is only touched on the device goroutine.
	asyncErr error
	// closed is set by close before it queues the teardown. do and enqueue
	// check it and queue their work under the read lock, so nothing can be
	// queued after the teardown.
	closed bool
	mu     sync.RWMutex
}

// errClosed is returned by calls on a closed backend.
var errClosed = errors.New("cuda: backend closed")

// startDevice starts the device goroutine and runs setup on it (creating
// the context); if setup fails the goroutine exits and the error returns.
func startDevice(setup func() error) (*device, error) {
	d := &device{work: make(chan func(), 1024), quit: make(chan struct{})}
	ready := make(chan error, 1)
	d.wg.Add(1)
	go d.loop(setup, ready)
	if err := <-ready; err != nil {
		d.wg.Wait()
		return nil, err
	}
	return d, nil
}

func (d *device) loop(setup func() error, ready chan<- error) {
	defer d.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := setup(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	for {
		select {
		case f := <-d.work:
			f()
		case <-d.quit:
			// Drain what was queued before close so that nothing is lost
			// silently, then stop.
			for {
				select {
				case f := <-d.work:
					f()
				default:
					return
				}
			}
		}
	}
}

// do runs f on the device goroutine and returns its error.
func (d *device) do(f func() error) error {
	res := make(chan error, 1)
	if !d.submit(func() { res <- f() }) {
		return errClosed
	}
	return <-res
}

// submit queues f unless the device is closed (or closing).
func (d *device) submit(f func()) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return false
	}
	d.work <- f
	return true
}

// enqueue runs f on the device goroutine without waiting; a failure is
// kept (the first one only) for takeAsyncErr.
func (d *device) enqueue(what string, f func() error) error {
	queued := d.submit(func() {
		if d.asyncErr != nil {
			return // the context may be unusable; report the first error
		}
		if err := f(); err != nil {
			d.asyncErr = fmt.Errorf("%s: %w", what, err)
		}
	})
	if !queued {
		return errClosed
	}
	return nil
}

// takeAsyncErr returns and clears the first asynchronous failure. It must
// run on the device goroutine (inside do).
func (d *device) takeAsyncErr() error {
	err := d.asyncErr
	d.asyncErr = nil
	return err
}

// close runs teardown on the device goroutine after the queued work and
// stops it. Calls after the first return nil at once; calls of do and
// enqueue from then on return errClosed.
func (d *device) close(teardown func() error) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	res := make(chan error, 1)
	d.work <- func() { res <- teardown() }
	err := <-res
	close(d.quit)
	d.wg.Wait()
	return err
}
