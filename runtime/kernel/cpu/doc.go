// Package cpu is the CPU implementation of kernel.Backend, registered as
// "cpu". It is Go plus Go assembly for amd64, so it builds with
// CGO_ENABLED=0 everywhere; other architectures (and the purego build tag)
// use portable Go loops.
//
// Activations and the KV cache are float32 (ComputeDType F32). Weights may
// be F32, F16 or BF16; 16-bit weights stay 16-bit in memory (including
// memory-mapped safetensors wrapped without copying by MapHost) and are
// widened inside the MatMul inner loop.
//
// # Inner loops
//
// The kernel set is chosen once at start-up from the CPU's features
// (golang.org/x/sys/cpu): "avx512" (AVX-512 F/BW/VL), "avx2" (AVX2, FMA,
// F16C) or "generic" (Go). VSERVE_CPU_KERNELS=generic|avx2 selects a lower
// one for comparisons; KernelSet reports the one in use.
//
//   - MatMul is built from register-blocked tiles that compute 4 weight
//     rows by T tokens (T ≤ 6 with AVX-512, ≤ 3 with AVX2), so each weight
//     vector loaded feeds T FMAs; tokens are taken in blocks that stay in
//     L2 for prefill. A decode (m = 1) runs one assembly loop over the
//     whole row range with software prefetch: it is memory bound and runs
//     at the streaming read bandwidth of the core. f16 is widened with
//     VCVTPH2PS, bf16 with a zero-extend and shift.
//   - PagedAttention works per (sequence, KV head): the query vectors that
//     share a KV head (GQA heads of a decode, rows of a prefill chunk, up to
//     the tile width) are scored against four key rows at a time through
//     the same tiles, then an online softmax (vectorised max and exp) and a
//     vectorised weighted sum of the value rows.
//
// # Threads
//
// Ops run on the calling goroutine plus a persistent pool of worker
// goroutines (Options.Threads, default GOMAXPROCS) that New starts and
// Close stops. MatMul splits over output rows, PagedAttention over
// (sequence, KV head) pairs. Every op has finished when it returns, so Sync
// is a no-op. Concurrent calls are correct; one of them at a time uses the
// pool, the others run on their caller alone.
//
// The backend is also the oracle of the conformance suite in
// runtime/kernel/kerneltest; cpu's tests run that suite on every kernel set
// the machine supports.
package cpu
