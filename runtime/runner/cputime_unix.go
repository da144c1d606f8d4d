//go:build unix

package runner

import (
	"syscall"
	"time"
)

// processCPUTime is the user+system CPU time of the process so far: on a
// shared machine it measures work done independently of time-sharing.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
