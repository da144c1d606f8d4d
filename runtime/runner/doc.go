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
