// Package model owns what a model is on disk and how it runs: the Hugging
// Face config.json of the Llama family (LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM), safetensors weights (single file or sharded, F32, F16 or
// BF16, memory-mapped), the forward pass written only against kernel.Backend
// (embedding, RMSNorm, QKV projections, RoPE, paged KV cache, paged
// attention, SwiGLU MLP, final norm, lm_head on the gathered rows only), the
// KV cache arena and the per-step activation workspace, and a seeded
// generator of random-weight model directories (with a SentencePiece-style
// BPE tokenizer.json) for tests and benchmarks.
//
// The runner (runtime/runner) builds the flat per-step inputs; this package
// turns them into logits.
package model
