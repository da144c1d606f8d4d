//go:build cudaemu

package emu

/*
#cgo CXXFLAGS: -std=c++20 -O2 -w -I${SRCDIR}/../../kernels/emu/include
#cgo LDFLAGS: -lstdc++ -lpthread -lm
#include <stdlib.h>
#include "emu_c.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// HasKernel reports whether a kernel of that name exists.
func HasKernel(name string) bool {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	return C.emu_has_kernel(cs) != 0
}

// Launch runs kernel name over the grid with block threads; every
// argument is one 8-byte slot, as cuLaunchKernel receives them.
func Launch(name string, grid [3]int, block, smem int, args []uint64) error {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var p *C.uint64_t
	if len(args) > 0 {
		p = (*C.uint64_t)(unsafe.Pointer(&args[0]))
	}
	switch st := C.emu_launch(cs, C.uint(grid[0]), C.uint(grid[1]), C.uint(grid[2]), C.uint(block), C.uint(smem), p, C.int(len(args))); st {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("emu: no kernel %s", name)
	case 2:
		return fmt.Errorf("emu: kernel %s: wrong argument count %d", name, len(args))
	case 3:
		return fmt.Errorf("emu: kernel %s: %d bytes of dynamic shared memory", name, smem)
	default:
		return fmt.Errorf("emu: kernel %s: block of %d threads", name, block)
	}
}

// Gemm is cublasGemmEx (column-major, fp32 accumulation) on the CPU.
func Gemm(transA, transB, m, n, k int, alpha float32, a uint64, aType, lda int, b uint64, bType, ldb int,
	beta float32, c uint64, cType, ldc int) error {
	C.emu_gemm(C.int(transA), C.int(transB), C.int(m), C.int(n), C.int(k), C.float(alpha), C.uint64_t(a), C.int(aType),
		C.int(lda), C.uint64_t(b), C.int(bType), C.int(ldb), C.float(beta), C.uint64_t(c), C.int(cType), C.int(ldc))
	return nil
}

// Malloc returns n bytes of host memory standing for device memory.
func Malloc(n int64) uint64 { return uint64(C.emu_malloc(C.uint64_t(n))) }

// Free releases Malloc's memory.
func Free(p uint64) { C.emu_free(C.uint64_t(p)) }

// CopyIn copies n bytes from host memory src to p.
func CopyIn(p uint64, src unsafe.Pointer, n int64) {
	C.emu_memcpy(C.uint64_t(p), C.uint64_t(uintptr(src)), C.uint64_t(n))
}

// CopyOut copies n bytes from p to host memory dst.
func CopyOut(dst unsafe.Pointer, p uint64, n int64) {
	C.emu_memcpy(C.uint64_t(uintptr(dst)), C.uint64_t(p), C.uint64_t(n))
}

// Memset sets n bytes at p to v.
func Memset(p uint64, v byte, n int64) { C.emu_memset(C.uint64_t(p), C.int(v), C.uint64_t(n)) }
