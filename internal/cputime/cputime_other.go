//go:build !unix

package cputime

import "time"

// Process is unavailable here: always 0, and callers report wall time only.
func Process() time.Duration { return 0 }
