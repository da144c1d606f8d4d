// Package kerneltest is the conformance suite every kernel.Backend runs
// (Run), and the benchmarks CPU and CUDA share by name (BenchmarkMatMul,
// BenchmarkPagedAttention, BenchmarkSample).
//
// Every op is checked on random shapes against straightforward float64
// references written here, by normalised error ‖got − want‖ / ‖want‖ with
// a tolerance that depends on the backend's ComputeDType. Outputs are
// poisoned with NaN before each op so that elements an op fails to write
// are caught; KV cache slots outside the valid positions (the null block
// 0, unused blocks, positions past a sequence's length) hold NaN too, so
// reading them is caught. Inputs come from a seeded generator: the seed
// is fixed unless KERNELTEST_SEED is set (a number, or "random"), and is
// logged.
package kerneltest
