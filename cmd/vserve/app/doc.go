// Package app is the vserve program behind cmd/vserve: flag parsing with
// vLLM's names and startup validation (ParseFlags), and the wiring of
// kernel backend, model, tokenizer, scheduler, runner, engine, telemetry
// and HTTP server (Run), with graceful shutdown. main stays a few lines so
// that all of this is testable.
package app
