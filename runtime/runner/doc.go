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
// Prompt logprobs (SamplingParams.PromptLogprobs): for a request that asked
// for them and has no output yet, after sampling the runner computes the
// logits of its prompt positions scheduled in the step (model.Logits, at
// most the workspace's logit rows at a time, so memory stays that of the
// sampled rows) and, on the host in float64, the log-softmax value and rank
// of the next prompt token and the top k; RunnerOutput.PromptLogprobs
// carries them per request, and the step's Sample time includes them.
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
