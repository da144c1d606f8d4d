//go:build unix

package tokenizer

import (
	"syscall"
	"time"
)

// processCPUTime is the user+system CPU time of this process; benchmarks
// report it beside wall time because the machine they run on is shared.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
