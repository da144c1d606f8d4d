package cputime

import (
	"runtime"
	"testing"
)

func TestProcessNeverDecreases(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no process CPU time here")
	}
	before := Process()
	if before <= 0 {
		t.Fatalf("a running test process reports %v of CPU", before)
	}
	x := 0
	for i := range 1 << 22 {
		x ^= i * i
	}
	if after := Process(); after < before {
		t.Fatalf("CPU time went back from %v to %v (%d)", before, after, x)
	}
}
