// Package bench is vserve's serving benchmark: a load generator for any
// OpenAI-compatible endpoint (completions or chat, streaming), datasets
// (random token-exact prompts, ShareGPT JSON, shared-prefix), per-run metrics
// in the manner of `vllm bench serve` (throughput, TTFT, TPOT, ITL, E2E,
// goodput), a side-by-side comparison mode for noisy shared machines, and
// output as a terminal table, JSON and PNG plots. The command is
// bench/cmd/vserve-bench.
package bench
