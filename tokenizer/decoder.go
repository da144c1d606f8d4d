package tokenizer

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decoder turns token strings back into text pieces, as HF's decode_chain:
// the pieces are concatenated by the caller.
type decoder interface {
	decodeChain(tokens []string) []string
}

type decoderSeq []decoder

func (seq decoderSeq) decodeChain(tokens []string) []string {
	for _, d := range seq {
		tokens = d.decodeChain(tokens)
	}
	return tokens
}

// byteLevelDecoder maps byte-alphabet runes back to bytes. A token with a
// rune outside the alphabet (an added token such as "<|im_end|>" can only
// contain printable ASCII, but others might) contributes its UTF-8 bytes.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(tokens []string) []string {
	var buf []byte
	for _, t := range tokens {
		if raw, ok := byteLevelDecodeToken(t); ok {
			buf = append(buf, raw...)
		} else {
			buf = append(buf, t...)
		}
	}
	return []string{lossyUTF8(buf)}
}

type replaceDecoder struct{ r *replacer }

func (d replaceDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = d.r.replace(t)
	}
	return out
}

// byteFallbackDecoder turns runs of <0xNN> tokens into the text they spell;
// a run that is not valid UTF-8 yields one U+FFFD per byte token.
type byteFallbackDecoder struct{}

func (byteFallbackDecoder) decodeChain(tokens []string) []string {
	out := make([]string, 0, len(tokens))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range tokens {
		if b, ok := parseByteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// parseByteToken recognises the SentencePiece byte tokens "<0x00>".."<0xFF>".
func parseByteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(t[3:5], 16, 8)
	if err != nil {
		return 0, false
	}
	return byte(v), true
}

type fuseDecoder struct{}

func (fuseDecoder) decodeChain(tokens []string) []string {
	return []string{strings.Join(tokens, "")}
}

// stripDecoder removes up to start leading and stop trailing occurrences of
// content from every token.
type stripDecoder struct {
	content     string
	start, stop int
}

func (d stripDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		for n := 0; n < d.start && strings.HasPrefix(t, d.content); n++ {
			t = t[len(d.content):]
		}
		for n := 0; n < d.stop && strings.HasSuffix(t, d.content); n++ {
			t = t[:len(t)-len(d.content)]
		}
		out[i] = t
	}
	return out
}

// metaspaceDecoder turns "▁" back into spaces and drops the space it
// prepended to the first token.
type metaspaceDecoder struct {
	replacement string
	prepend     bool
}

func (d metaspaceDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		t = strings.ReplaceAll(t, d.replacement, " ")
		if i == 0 && d.prepend {
			t = strings.TrimPrefix(t, " ")
		}
		out[i] = t
	}
	return out
}

func parseDecoder(raw json.RawMessage) (decoder, error) {
	typ, err := typeTag(raw)
	if err != nil || typ == "" {
		return nil, err
	}
	switch typ {
	case "Sequence":
		seq, err := parseSequence(raw, "decoders", parseDecoder)
		if err != nil {
			return nil, err
		}
		return decoderSeq(seq), nil
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "Replace":
		var v struct {
			Pattern patternJSON `json:"pattern"`
			Content string      `json:"content"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		r, err := newReplacer(v.Pattern, v.Content)
		if err != nil {
			return nil, err
		}
		return replaceDecoder{r: r}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		var v struct {
			Content string `json:"content"`
			Start   int    `json:"start"`
			Stop    int    `json:"stop"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		return stripDecoder{content: v.Content, start: v.Start, stop: v.Stop}, nil
	case "Metaspace":
		v := struct {
			Replacement    string `json:"replacement"`
			PrependScheme  string `json:"prepend_scheme"`
			AddPrefixSpace *bool  `json:"add_prefix_space"`
		}{}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		m := newMetaspace(v.Replacement, v.PrependScheme, v.AddPrefixSpace, nil)
		return metaspaceDecoder{replacement: m.replacement, prepend: m.prepend != "never"}, nil
	}
	return nil, fmt.Errorf("decoder type %q is not supported", typ)
}

// cleanUpTokenization is transformers' clean_up_tokenization: it removes the
// space before punctuation and English contractions, one rule after the
// other as Python's chained str.replace calls do.
func cleanUpTokenization(s string) string {
	for _, r := range cleanUpRules {
		s = strings.ReplaceAll(s, r[0], r[1])
	}
	return s
}

var cleanUpRules = [][2]string{
	{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
	{" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
}
