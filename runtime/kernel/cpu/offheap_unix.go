//go:build unix

package cpu

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// mapAnonymous returns size zeroed bytes of anonymous memory outside the Go
// heap, or nil when the system refuses; the region's owner unmaps it once
// it is unreachable.
func mapAnonymous(size int) *region {
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil
	}
	r := &region{mem: mem}
	runtime.AddCleanup(r, func(mem []byte) { _ = unix.Munmap(mem) }, mem)
	return r
}
