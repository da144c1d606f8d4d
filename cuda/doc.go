// Package cuda is the CUDA backend of vserve: a kernel.Backend for NVIDIA
// GPUs (Ampere sm_80, Hopper sm_90, newer through PTX), registered as
// "cuda" when the program is built with -tags cuda.
//
// It owns
//   - the kernels (kernels/*.cu, one file per family: paged attention,
//     reshape-and-cache, RMSNorm, RoPE, SiLU-mul, gathers, elementwise,
//     sampling, logprobs), compiled ahead of time by `go generate` into
//     fat binaries that are embedded and loaded with the driver's module
//     API. Paged attention has two paths: a generic kernel for prefill
//     and mixed batches, and, when every sequence has one query token
//     (planDecode), a split-KV decode kernel built for bandwidth (one warp
//     per KV head's group of query heads, 16-byte K/V loads straight into
//     registers, partitions sized from the context length, then the
//     combine kernel);
//   - the bridge: gorgonia.org/cu for the driver API, one device goroutine
//     locked to its OS thread that owns the context and stream, kernel
//     launches whose arguments are each passed in their own 8-byte slot;
//   - cuBLAS for matrix products, loaded at run time with dlopen (CUDA 13,
//     12 or 11 sonames, or a directory given by VSERVE_CUBLAS_DIR), so the
//     binary links only the driver library; all C calls are in cgo.go;
//   - the KV arena (one device allocation, see NumBlocks) and CUDA-event
//     step timing (EventTimer).
//
// Every file that imports "C" or gorgonia.org/cu (cgo.go, driver_cu.go)
// carries the cuda build tag. gorgonia.org/cu initialises the driver in
// its package init and exits when there is none, so a cuda-tagged binary
// only runs on a GPU machine; plain builds and `go test ./...` compile
// only this file, gen.go and the pure-Go planning code (arena.go, plan.go,
// sampleplan.go, timer.go), which the plain tests cover.
//
// The backend reaches the device through a small driver interface
// (driver.go). With the cudaemu tag instead of cuda, driver_emu.go runs
// the same kernels on the CPU through internal/emu (an emulation of the
// CUDA execution model, kernels/emu/emu.h), so the whole backend, Go side
// and kernels, runs the conformance suite on machines without a GPU
// (registered as "cuda-emu"; correctness only, no speed). kernels/emu/run.sh
// checks the kernels alone against plain C++ references.
package cuda
