// Package server is vserve's OpenAI-compatible HTTP API on net/http:
// /v1/completions and /v1/chat/completions (JSON and SSE streaming),
// /v1/models, /tokenize, /detokenize, /health, /version and /metrics.
//
// It owns request validation and conversion to engine requests, prompt
// tokenisation and chat templates (through the Tokenizer interface),
// incremental detokenisation and stop strings, admission (context length,
// bounded queue -> 429, per-request deadline; a request's generations,
// prompts × n, enter the engine all at once or not at all, and more than
// the queue bound, or 4096 when it is unbounded, is a 400), body limits,
// API keys, CORS and OpenAI error bodies. Generation itself happens in package engine.
//
// Logprobs follow vLLM: logprobs (completions) and logprobs/top_logprobs
// (chat) for generated tokens; echo with logprobs puts the prompt tokens
// first in choices[].logprobs (the first with null values), in the first
// chunk when streaming; prompt_logprobs (vLLM extension) adds
// choices[].prompt_logprobs (completions) or a top-level prompt_logprobs
// (chat): null for the first prompt token, then {token id: {logprob, rank,
// decoded_token}} with the prompt token first and the top k after it.
// Choices carry vLLM's stop_reason: the stop string or stop token id that
// ended them, null for EOS, length and the rest (in a chat stream, on the
// chunk with the finish reason only).
//
// Telemetry is the seam for journey tracing.
package server
