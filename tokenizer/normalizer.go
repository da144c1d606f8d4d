package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"github.com/dlclark/regexp2/v2"
	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites one non-added-token section of the input before
// pre-tokenization.
type normalizer interface {
	normalize(s string) string
}

type normalizerFunc func(string) string

func (f normalizerFunc) normalize(s string) string { return f(s) }

type normalizerSeq []normalizer

func (seq normalizerSeq) normalize(s string) string {
	for _, n := range seq {
		s = n.normalize(s)
	}
	return s
}

// prependNormalizer prepends its text to every non-empty section (Llama 2 and
// Mistral use it to add the SentencePiece "▁" word marker).
type prependNormalizer struct{ prefix string }

func (p prependNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return p.prefix + s
}

// replacer replaces a literal string or a regex pattern by content; it backs
// both the Replace normalizer and the Replace decoder.
type replacer struct {
	literal string
	re      *regexp2.Regexp
	content string
}

func newReplacer(p patternJSON, content string) (*replacer, error) {
	switch {
	case p.String != nil:
		if *p.String == "" {
			return nil, fmt.Errorf("Replace: empty pattern")
		}
		return &replacer{literal: *p.String, content: content}, nil
	case p.Regex != nil:
		re, err := compileOniguruma(*p.Regex)
		if err != nil {
			return nil, fmt.Errorf("Replace: %w", err)
		}
		return &replacer{re: re, content: content}, nil
	}
	return nil, fmt.Errorf("Replace: pattern needs String or Regex")
}

func (r *replacer) replace(s string) string {
	if r.re == nil {
		return strings.ReplaceAll(s, r.literal, r.content)
	}
	var b strings.Builder
	last := 0
	for _, m := range findAllIndex(r.re, s) {
		b.WriteString(s[last:m[0]])
		b.WriteString(r.content)
		last = m[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

func (r *replacer) normalize(s string) string { return r.replace(s) }

// compileOniguruma compiles a tokenizer.json regex. HF tokenizers runs these
// with Oniguruma; regexp2 (.NET syntax) supports the same look-around and
// Unicode classes, and its \s is the Unicode White_Space set used there.
func compileOniguruma(pattern string) (*regexp2.Regexp, error) {
	re, err := regexp2.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", pattern, err)
	}
	return re, nil
}

// findAllIndex returns the byte ranges of all non-overlapping matches.
func findAllIndex(re *regexp2.Regexp, s string) [][]int {
	idx, err := re.FindAllStringIndex(s, -1)
	if err != nil {
		// Only a match timeout can fail, and no timeout is set.
		panic(fmt.Sprintf("tokenizer: regex %q: %v", re.String(), err))
	}
	return idx
}

func stripNormalizer(left, right bool) normalizer {
	return normalizerFunc(func(s string) string {
		if left {
			s = strings.TrimLeftFunc(s, unicode.IsSpace)
		}
		if right {
			s = strings.TrimRightFunc(s, unicode.IsSpace)
		}
		return s
	})
}

func stripAccents(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func parseNormalizer(raw json.RawMessage) (normalizer, error) {
	typ, err := typeTag(raw)
	if err != nil || typ == "" {
		return nil, err
	}
	switch typ {
	case "Sequence":
		seq, err := parseSequence(raw, "normalizers", parseNormalizer)
		if err != nil {
			return nil, err
		}
		return normalizerSeq(seq), nil
	case "Prepend":
		var v struct {
			Prepend string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		return prependNormalizer{prefix: v.Prepend}, nil
	case "Replace":
		var v struct {
			Pattern patternJSON `json:"pattern"`
			Content string      `json:"content"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		return newReplacer(v.Pattern, v.Content)
	case "NFC":
		return normalizerFunc(norm.NFC.String), nil
	case "NFD":
		return normalizerFunc(norm.NFD.String), nil
	case "NFKC":
		return normalizerFunc(norm.NFKC.String), nil
	case "NFKD":
		return normalizerFunc(norm.NFKD.String), nil
	case "Lowercase":
		return normalizerFunc(strings.ToLower), nil
	case "StripAccents":
		return normalizerFunc(stripAccents), nil
	case "Strip":
		var v struct {
			Left  bool `json:"strip_left"`
			Right bool `json:"strip_right"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		return stripNormalizer(v.Left, v.Right), nil
	}
	return nil, fmt.Errorf("normalizer type %q is not supported", typ)
}
