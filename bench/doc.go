// Package bench is vserve's serving benchmark: a load generator for any
// OpenAI-compatible endpoint (completions or chat, streaming), datasets
// (random token-exact prompts, ShareGPT JSON, shared-prefix), per-run metrics
// in the manner of `vllm bench serve` (throughput, TTFT, TPOT, ITL, E2E,
// goodput), a side-by-side comparison mode for noisy shared machines, and
// output as a terminal table, JSON and PNG plots. The command is
// bench/cmd/vserve-bench.
//
// # Metrics
//
// The client times each streamed request as vllm bench serve's request
// functions do, on the server-sent chunks whose choices list is not empty
// (whatever their text: chat's role chunk, or a chunk of a special token
// with empty text, counts; the final usage chunk, which has no choices, and
// [DONE] do not):
//
//   - TTFT, time to first token: from sending the request to the first
//     chunk with choices.
//   - ITL, inter-token latency: one entry per later chunk with choices, the
//     time since the previous one.
//   - E2E (vLLM's E2EL), end-to-end latency: from sending the request to
//     the last chunk with choices.
//   - TPOT, time per output token after the first: (E2E - TTFT) / (output
//     tokens - 1), for requests with more than one output token.
//
// A request during which no chunk with choices arrived fails (no output).
//
// Output tokens are the completion_tokens of the server's usage chunk
// (requested with stream_options.include_usage). When a server sends none,
// vLLM counts the generated text's tokens with the tokenizer, without
// special tokens; so does the client when Client.Tokenizer is set
// (vserve-bench --tokenizer). With no tokenizer, it falls back to the number
// of chunks with choices, which is the token count only for servers that
// send one token per chunk.
package bench
