// Package server is vserve's OpenAI-compatible HTTP API on net/http:
// /v1/completions and /v1/chat/completions (JSON and SSE streaming),
// /v1/models, /tokenize, /detokenize, /health, /version and /metrics.
//
// It owns request validation and conversion to engine requests, prompt
// tokenisation and chat templates (through the Tokenizer interface),
// incremental detokenisation and stop strings, admission (context length,
// bounded queue -> 429, per-request deadline), body limits, API keys, CORS
// and OpenAI error bodies. Generation itself happens in package engine.
// Telemetry is the seam for journey tracing.
package server
