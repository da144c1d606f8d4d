// Package scheduler does continuous batching in the manner of vLLM v1.
//
// It is pure data in, pure data out: Schedule returns a step-numbered
// *Output describing which tokens of which requests run in the next batch,
// and Update applies a RunnerOutput and returns per-request deltas. It starts
// no goroutines, touches no device and uses no CGo; running out of KV blocks
// is a normal outcome (preemption), not an error.
package scheduler
