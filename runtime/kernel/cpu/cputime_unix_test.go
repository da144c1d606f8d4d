//go:build unix

package cpu

import (
	"syscall"
	"time"
)

// processCPUTime is the user+system CPU time of this process so far, so
// benchmarks can report rates per CPU-second on a shared machine.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
