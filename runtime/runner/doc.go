// Package runner executes the scheduler's step-numbered batches on a model:
// it keeps a persistent batch of request states keyed by request id (token
// list and block table), applies each scheduler.Output's diffs (new, cached,
// resumed, finished requests), builds the flat int32 inputs of the step
// (token ids, positions, slot mapping, query starts, sequence lengths,
// block tables, logit rows) in reused host memory and uploads them once,
// runs model.Forward, samples the requests that reached the end of their
// token list, and returns a scheduler.RunnerOutput carrying the step number,
// the sampled tokens, the requested logprobs and the step's timings.
//
// A Runner is used by one goroutine (the engine loop) and starts none.
package runner

// Benchmarks (bench_test.go) generate random-weight models of the
// TinyStories 15M/42M/110M shapes and measure decode (batch 1, 4, 16) and
// prefill throughput end to end through Execute, in tokens per wall-clock
// second and per CPU-second (the latter is what matters on a machine shared
// with other work), plus single-thread read bandwidth for the
// memory-bandwidth bound of decode:
//
//	go test ./runtime/runner -run XXX -bench 'Decode|Prefill|MemoryBandwidth' \
//	    -benchtime 64x -bench.sizes 15M,42M,110M [-bench.threads 1] [-bench.kernels]
//
// -bench.kernels wraps the backend with Profile and prints the time per op.
