// Package cpu is the CPU implementation of kernel.Backend, registered as
// "cpu". It is pure Go plus Go assembly (amd64 AVX2/FMA/F16C inner loops
// selected at start-up, with portable Go fallbacks), so it builds with
// CGO_ENABLED=0 on every architecture.
//
// Activations are float32 (ComputeDType F32). Weights may be F32, F16 or
// BF16; 16-bit weights stay 16-bit in memory (including memory-mapped
// safetensors wrapped by MapHost) and are converted inside the MatMul inner
// loop. Ops run synchronously on the calling goroutine plus a persistent
// pool of worker goroutines (Options.Threads, default GOMAXPROCS) that the
// backend starts in Open and stops in Close; MatMul splits over output
// rows, PagedAttention over (sequence, head) pairs. Sync is a no-op.
//
// The backend is also the oracle of the conformance suite in
// runtime/kernel/kerneltest.
package cpu
