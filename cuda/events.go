//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"time"
)

// Mark enqueues a CUDA event after every op submitted so far and returns
// its handle (see EventTimer).
func (be *Backend) Mark() (int, error) {
	be.mu.Lock()
	var h int
	if n := len(be.free); n > 0 {
		h = be.free[n-1]
		be.free = be.free[:n-1]
		be.mu.Unlock()
	} else {
		be.mu.Unlock()
		var ev int
		if err := be.dev.do(func() error {
			var e error
			ev, e = be.drv.newEvent()
			return e
		}); err != nil {
			return 0, fmt.Errorf("cuda: event: %w", err)
		}
		be.mu.Lock()
		be.events = append(be.events, ev)
		h = len(be.events) - 1
		be.mu.Unlock()
	}
	ev := be.event(h)
	drv := be.drv
	if err := be.dev.enqueue("event record", func() error { return drv.record(ev) }); err != nil {
		return 0, err
	}
	return h, nil
}

func (be *Backend) event(h int) int {
	be.mu.Lock()
	defer be.mu.Unlock()
	return be.events[h]
}

// Elapsed waits for mark to and returns the device time from mark from.
func (be *Backend) Elapsed(from, to int) (time.Duration, error) {
	be.mu.Lock()
	ok := from >= 0 && to >= 0 && from < len(be.events) && to < len(be.events)
	be.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("cuda: Elapsed(%d, %d): unknown mark", from, to)
	}
	a, b := be.event(from), be.event(to)
	var ms float64
	err := be.dev.do(func() error {
		if err := be.dev.asyncErr; err != nil {
			return err // kept for Sync or Download, which report it as theirs
		}
		var e error
		ms, e = be.drv.elapsed(a, b)
		return e
	})
	if err != nil {
		return 0, fmt.Errorf("cuda: Elapsed: %w", err)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// ReleaseMarks returns handles for reuse.
func (be *Backend) ReleaseMarks(marks ...int) {
	be.mu.Lock()
	defer be.mu.Unlock()
	for _, m := range marks {
		if m >= 0 && m < len(be.events) {
			be.free = append(be.free, m)
		}
	}
}
