//go:build unix

package sample

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user + system) used by the process so
// far, so that benchmarks can report CPU work per row, which a loaded
// machine distorts much less than wall time.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
