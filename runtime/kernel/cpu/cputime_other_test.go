//go:build !unix

package cpu

import "time"

// processCPUTime is unavailable here; benchmarks report wall-clock rates only.
func processCPUTime() time.Duration { return 0 }
