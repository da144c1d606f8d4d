//go:build !unix

package cpu

// mapAnonymous is unavailable here: large buffers stay on the Go heap.
func mapAnonymous(int) *region { return nil }
