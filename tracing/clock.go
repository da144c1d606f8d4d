package tracing

import "time"

// processStart anchors the monotonic timestamps (ts.monotonic_ns and
// friends): they are nanoseconds since the process started, read from the
// monotonic clock, so they never jump with the wall clock.
var processStart = time.Now()

// monotonicNS returns t on the process's monotonic time line in ns.
func monotonicNS(t time.Time) int64 { return int64(t.Sub(processStart)) }

// monotonicSeconds returns t on the process's monotonic time line in s.
func monotonicSeconds(t time.Time) float64 { return float64(monotonicNS(t)) / 1e9 }
