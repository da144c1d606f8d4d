// Package tokenizer owns text <-> token id conversion and chat prompt
// rendering for vserve.
//
// It loads Hugging Face tokenizer.json files (plus the optional
// tokenizer_config.json, generation_config.json and chat_template.jinja
// beside them) and implements, in pure Go:
//
//   - byte-level BPE as used by GPT-2, Llama 3 and Qwen2/2.5: ByteLevel and
//     Split pre-tokenizers whose look-ahead patterns Go's regexp cannot run
//     (the well-known GPT-2, Llama 3 and Qwen2 patterns use hand-written
//     scanners that a fuzz test checks against regexp2; any other pattern
//     runs on regexp2), Llama 3's ignore_merges, Qwen's NFC normalizer;
//   - SentencePiece-style BPE with byte fallback as used by Llama 2, Mistral
//     and TinyStories: Prepend/Replace normalizers or the Metaspace
//     pre-tokenizer, "▁" and <0xNN> byte tokens, unk with fuse_unk;
//   - added and special tokens, split out of the input before normalization
//     (leftmost-longest, with lstrip/rstrip/single_word/normalized);
//     TemplateProcessing post-processors and the add_bos_token/add_eos_token
//     settings of tokenizer_config.json;
//   - the decoders (ByteLevel, Replace, ByteFallback, Fuse, Strip,
//     Metaspace, Sequence) and transformers' clean_up_tokenization_spaces;
//   - an IncrementalDecoder for streaming that never emits half a UTF-8
//     character (prefix/read offsets as in vLLM and TGI), and a StopMatcher
//     that holds back text which may start a stop string;
//   - chat templates rendered with a real Jinja engine
//     (github.com/ardanlabs/jinja: trim_blocks and lstrip_blocks as
//     transformers sets them, raise_exception, strftime_now) with
//     transformers' tojson (Python json.dumps formatting, key order kept).
//
// BPE merges run on a heap of candidate pairs (lowest rank, then leftmost)
// over a linked list of symbols; results are cached per pre-token word.
// Byte-level models work on raw bytes (the vocabulary is mapped back from
// the printable byte alphabet at load time). SentencePiece-style inputs are
// one long "word"; when no token has a "▁" after another character (true of
// the Llama 2, Mistral and TinyStories vocabularies) they are cut before
// each "▁"-prefixed word, which gives the same ids and lets the cache work.
//
// Where implementations differ, this package follows HF tokenizers (Rust),
// which transformers and vLLM use: a run of byte-fallback tokens that is not
// valid UTF-8 decodes to one U+FFFD per byte token, and Metaspace with
// split=true cuts before every "▁". Decode applies clean-up of tokenization
// spaces when tokenizer_config.json asks for it; IncrementalDecoder does
// not, as vLLM's streaming does not.
//
// A Tokenizer and a ChatTemplate are immutable after loading and safe for
// concurrent use. IncrementalDecoder and StopMatcher hold per-request state
// and are not.
package tokenizer
