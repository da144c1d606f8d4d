// Package tokenizer owns text <-> token id conversion and chat prompt
// rendering for vserve.
//
// It loads Hugging Face tokenizer.json files (plus the optional
// tokenizer_config.json and generation_config.json beside them) and
// implements, in pure Go:
//
//   - byte-level BPE as used by GPT-2, Llama 3 and Qwen2/2.5 (ByteLevel and
//     Split pre-tokenizers whose look-ahead patterns Go's regexp cannot run:
//     the well-known patterns use a hand-written scanner, any other pattern
//     runs on regexp2; Llama 3's ignore_merges; Qwen's NFC normalizer);
//   - SentencePiece-style BPE with byte fallback as used by Llama 2, Mistral
//     and TinyStories (Prepend/Replace normalizers or the Metaspace
//     pre-tokenizer, "▁" and <0xNN> byte tokens);
//   - added and special tokens (split out of the input before normalization),
//     TemplateProcessing post-processors and the add_bos_token/add_eos_token
//     settings of tokenizer_config.json;
//   - the decoders (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace,
//     Sequence) and transformers' clean_up_tokenization_spaces rule;
//   - an incremental detokenizer for streaming that never emits half a UTF-8
//     character (prefix/read offsets as in vLLM and TGI), and a stop-string
//     matcher that holds back text which may start a stop string;
//   - chat templates rendered with a real Jinja engine
//     (github.com/ardanlabs/jinja) with HF transformers' trim_blocks and
//     lstrip_blocks semantics.
//
// A Tokenizer is immutable after loading and safe for concurrent use.
// IncrementalDecoder and StopMatcher hold per-request state and are not.
package tokenizer
