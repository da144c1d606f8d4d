package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// initialPrefixTokens is how many prompt tokens before the first generated
// token are decoded as context, as vLLM does (its
// INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET), so that the first generated
// token gets the right leading space.
const initialPrefixTokens = 5

// IncrementalDecoder turns a stream of generated token ids into text
// deltas. It keeps two offsets into the ids: text up to readOffset has been
// emitted; ids from prefixOffset to readOffset are decoded again as context
// so that decoders which depend on neighbours (SentencePiece's leading
// space, byte fallback, byte-level UTF-8 split across tokens) come out
// right. A delta is emitted only when it does not end in U+FFFD, so half a
// UTF-8 character is never emitted; Flush emits whatever is held back.
//
// Clean-up of tokenization spaces is not applied (as in vLLM's streaming).
// Not safe for concurrent use.
type IncrementalDecoder struct {
	tok          *Tokenizer
	skipSpecial  bool
	ids          []int32
	prefixOffset int
	readOffset   int
}

// NewIncrementalDecoder starts decoding after the prompt ids (which are not
// emitted; they only give context).
func (t *Tokenizer) NewIncrementalDecoder(promptIDs []int32, skipSpecialTokens bool) *IncrementalDecoder {
	start := max(len(promptIDs)-initialPrefixTokens, 0)
	// Do not start the context inside a character that byte tokens spell.
	for start > 0 && len(promptIDs)-start < 4*initialPrefixTokens && t.startsMidChar(promptIDs[start]) {
		start--
	}
	ids := make([]int32, 0, len(promptIDs)-start+64)
	ids = append(ids, promptIDs[start:]...)
	return &IncrementalDecoder{
		tok:         t,
		skipSpecial: skipSpecialTokens,
		ids:         ids,
		readOffset:  len(ids),
	}
}

// Add appends one generated id and returns the newly completed text (often
// "", e.g. while a multi-byte character is incomplete).
func (d *IncrementalDecoder) Add(id int32) string {
	d.ids = append(d.ids, id)
	prefix := d.tok.decodeRaw(d.ids[d.prefixOffset:d.readOffset], d.skipSpecial)
	full := d.tok.decodeRaw(d.ids[d.prefixOffset:], d.skipSpecial)
	if len(full) <= len(prefix) || strings.HasSuffix(full, "\uFFFD") {
		return ""
	}
	delta := newSuffix(prefix, full)
	d.prefixOffset = d.readOffset
	d.readOffset = len(d.ids)
	d.compact()
	return delta
}

// Flush returns the text still held back (e.g. an incomplete character,
// rendered as U+FFFD) and marks it emitted.
func (d *IncrementalDecoder) Flush() string {
	if d.readOffset == len(d.ids) {
		return ""
	}
	prefix := d.tok.decodeRaw(d.ids[d.prefixOffset:d.readOffset], d.skipSpecial)
	full := d.tok.decodeRaw(d.ids[d.prefixOffset:], d.skipSpecial)
	d.prefixOffset = d.readOffset
	d.readOffset = len(d.ids)
	if len(full) <= len(prefix) {
		return ""
	}
	return newSuffix(prefix, full)
}

// newSuffix returns the part of full after prefix. Decoding more tokens
// normally only appends text; if a decoder rewrote the tail of prefix, the
// text after the longest common prefix (on a rune boundary) is returned.
func newSuffix(prefix, full string) string {
	if strings.HasPrefix(full, prefix) {
		return full[len(prefix):]
	}
	n := 0
	for n < len(prefix) && n < len(full) && prefix[n] == full[n] {
		n++
	}
	for n > 0 && !utf8.RuneStart(full[n]) {
		n--
	}
	return full[n:]
}

// compact drops ids before prefixOffset so that memory and decode cost stay
// bounded over long generations.
func (d *IncrementalDecoder) compact() {
	if d.prefixOffset < 256 {
		return
	}
	n := copy(d.ids, d.ids[d.prefixOffset:])
	d.ids = d.ids[:n]
	d.readOffset -= d.prefixOffset
	d.prefixOffset = 0
}

// startsMidChar tells whether the token's bytes begin with a UTF-8
// continuation byte (a byte-fallback <0x80>..<0xBF> token, or a byte-level
// token that continues a character).
func (t *Tokenizer) startsMidChar(id int32) bool {
	tok := t.IDToToken(id)
	if tok == "" {
		return false
	}
	if b, ok := parseByteToken(tok); ok && t.model.byteFallback {
		return !utf8.RuneStart(b)
	}
	if t.model.byteLevel {
		if raw, ok := byteLevelDecodeToken(tok); ok && len(raw) > 0 {
			return !utf8.RuneStart(raw[0])
		}
	}
	return false
}

// TokenText returns the text one token adds when it follows other text:
// with the leading space a SentencePiece "▁" stands for, without clean-up,
// and with special tokens spelled out. It is what logprobs show per token.
// A byte token that is only part of a character yields U+FFFD.
func (t *Tokenizer) TokenText(id int32) string {
	if t.anchor < 0 || t.IsSpecial(id) {
		return t.decodeRaw([]int32{id}, false)
	}
	full := t.decodeRaw([]int32{t.anchor, id}, false)
	if !strings.HasPrefix(full, t.anchorText) {
		return t.decodeRaw([]int32{id}, false)
	}
	return full[len(t.anchorText):]
}

// setAnchor picks an ordinary token that decodes to plain text on its own,
// used by TokenText as left context.
func (t *Tokenizer) setAnchor() {
	t.anchor = -1
	for _, s := range []string{"a", "x", "the", "1"} {
		ids := t.Encode(s, false)
		if len(ids) == 1 && !t.IsSpecial(ids[0]) {
			t.anchor, t.anchorText = ids[0], t.decodeRaw(ids, false)
			return
		}
	}
}
