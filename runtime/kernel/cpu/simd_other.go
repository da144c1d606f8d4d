//go:build !amd64 || purego

package cpu

// platformKernels lists the kernel sets available: only the portable Go
// ones on this architecture or with the purego build tag.
func platformKernels() []kernels { return []kernels{genericKernels} }
