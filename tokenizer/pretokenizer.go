package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
)

// piece is one pre-token. atStart tells whether it begins at offset 0 of
// the original input (Metaspace's prepend_scheme "first" depends on it).
type piece struct {
	text    string
	atStart bool
}

// preTokenizer splits pieces into smaller pieces.
type preTokenizer interface {
	preTokenize(in []piece) []piece
}

type preTokenizerSeq []preTokenizer

func (seq preTokenizerSeq) preTokenize(in []piece) []piece {
	for _, p := range seq {
		in = p.preTokenize(in)
	}
	return in
}

// matcher finds the byte ranges a Split pattern matches.
type matcher interface {
	findAll(s string) [][2]int
}

type regexMatcher struct{ re *regexp2.Regexp }

func (m regexMatcher) findAll(s string) [][2]int {
	idx := findAllIndex(m.re, s)
	out := make([][2]int, len(idx))
	for i, r := range idx {
		out[i] = [2]int{r[0], r[1]}
	}
	return out
}

type literalMatcher struct{ lit string }

func (m literalMatcher) findAll(s string) [][2]int {
	var out [][2]int
	for off := 0; ; {
		i := strings.Index(s[off:], m.lit)
		if i < 0 {
			return out
		}
		out = append(out, [2]int{off + i, off + i + len(m.lit)})
		off += i + len(m.lit)
	}
}

// runeMatcher matches every rune for which the predicate holds, each as its
// own match (as HF's char-predicate patterns do).
type runeMatcher func(rune) bool

func (f runeMatcher) findAll(s string) [][2]int {
	var out [][2]int
	for i, r := range s {
		if f(r) {
			out = append(out, [2]int{i, i + utf8.RuneLen(r)})
		}
	}
	return out
}

// isPunctuation is HF's punctuation test: ASCII punctuation or a Unicode
// punctuation character.
func isPunctuation(r rune) bool {
	return unicode.IsPunct(r) || (r < utf8.RuneSelf && unicode.IsSymbol(r))
}

// gpt2Pattern is the regex of the ByteLevel pre-tokenizer (use_regex=true).
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// newPatternMatcher returns a hand-written scanner for the well-known
// GPT-2, Llama 3 and Qwen2 patterns and regexp2 for any other pattern.
func newPatternMatcher(p patternJSON) (matcher, error) {
	switch {
	case p.String != nil:
		if *p.String == "" {
			return nil, fmt.Errorf("Split: empty pattern")
		}
		return literalMatcher{lit: *p.String}, nil
	case p.Regex != nil:
		if s := knownScanner(*p.Regex); s != nil {
			return s, nil
		}
		re, err := compileOniguruma(*p.Regex)
		if err != nil {
			return nil, fmt.Errorf("Split: %w", err)
		}
		return regexMatcher{re: re}, nil
	}
	return nil, fmt.Errorf("Split: pattern needs String or Regex")
}

// splitBehavior is how a Split pre-tokenizer treats the matched delimiters.
type splitBehavior int

const (
	splitRemoved splitBehavior = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

func parseSplitBehavior(s string) (splitBehavior, error) {
	switch s {
	case "Removed":
		return splitRemoved, nil
	case "Isolated":
		return splitIsolated, nil
	case "MergedWithPrevious":
		return splitMergedWithPrevious, nil
	case "MergedWithNext":
		return splitMergedWithNext, nil
	case "Contiguous":
		return splitContiguous, nil
	}
	return 0, fmt.Errorf("Split: unknown behavior %q", s)
}

type splitPreTokenizer struct {
	m        matcher
	behavior splitBehavior
	invert   bool
}

func (sp *splitPreTokenizer) preTokenize(in []piece) []piece {
	n := 0
	for _, p := range in {
		n += len(p.text)
	}
	out := make([]piece, 0, n/4+len(in))
	for _, p := range in {
		out = sp.splitOne(out, p)
	}
	return out
}

// span is a part of a piece and whether it is a delimiter (a match).
type span struct {
	start, end int
	match      bool
}

// spans cuts s into alternating match and non-match spans.
func spans(m matcher, s string, invert bool) []span {
	var out []span
	last := 0
	for _, r := range m.findAll(s) {
		if r[0] == r[1] {
			continue
		}
		if r[0] > last {
			out = append(out, span{last, r[0], invert})
		}
		out = append(out, span{r[0], r[1], !invert})
		last = r[1]
	}
	if last < len(s) {
		out = append(out, span{last, len(s), invert})
	}
	return out
}

func (sp *splitPreTokenizer) splitOne(out []piece, p piece) []piece {
	if cs, ok := sp.m.(coveringScanner); ok && sp.behavior == splitIsolated && !sp.invert {
		cs.eachMatch(p.text, func(i, j int) {
			out = append(out, piece{text: p.text[i:j], atStart: p.atStart && i == 0})
		})
		return out
	}
	var parts [][2]int
	ss := spans(sp.m, p.text, sp.invert)
	switch sp.behavior {
	case splitRemoved:
		for _, s := range ss {
			if !s.match {
				parts = append(parts, [2]int{s.start, s.end})
			}
		}
	case splitIsolated:
		for _, s := range ss {
			parts = append(parts, [2]int{s.start, s.end})
		}
	case splitMergedWithPrevious:
		// A delimiter joins the span before it unless that span is itself
		// a delimiter.
		prevMatch := false
		for _, s := range ss {
			if s.match && !prevMatch && len(parts) > 0 {
				parts[len(parts)-1][1] = s.end
			} else {
				parts = append(parts, [2]int{s.start, s.end})
			}
			prevMatch = s.match
		}
	case splitMergedWithNext:
		// Mirror image: a delimiter joins the span after it unless that
		// span is itself a delimiter.
		nextMatch := false
		rev := make([][2]int, 0, len(ss))
		for i := len(ss) - 1; i >= 0; i-- {
			s := ss[i]
			if s.match && !nextMatch && len(rev) > 0 {
				rev[len(rev)-1][0] = s.start
			} else {
				rev = append(rev, [2]int{s.start, s.end})
			}
			nextMatch = s.match
		}
		for i := len(rev) - 1; i >= 0; i-- {
			parts = append(parts, rev[i])
		}
	case splitContiguous:
		prevMatch := false
		for i, s := range ss {
			if i > 0 && s.match && prevMatch {
				parts[len(parts)-1][1] = s.end
			} else {
				parts = append(parts, [2]int{s.start, s.end})
			}
			prevMatch = s.match
		}
	}
	for _, r := range parts {
		if r[0] < r[1] {
			out = append(out, piece{text: p.text[r[0]:r[1]], atStart: p.atStart && r[0] == 0})
		}
	}
	return out
}

// byteLevelPreTokenizer optionally prefixes a space and splits with the GPT-2
// pattern. The byte -> printable-char mapping itself is implicit: the BPE
// model of a byte-level tokenizer works on raw bytes (see bpe.go).
type byteLevelPreTokenizer struct {
	addPrefixSpace bool
	split          *splitPreTokenizer
}

func (b *byteLevelPreTokenizer) preTokenize(in []piece) []piece {
	if b.addPrefixSpace {
		for i := range in {
			if !strings.HasPrefix(in[i].text, " ") {
				in[i].text = " " + in[i].text
			}
		}
	}
	if b.split != nil {
		return b.split.preTokenize(in)
	}
	return in
}

// metaspacePreTokenizer replaces spaces by the replacement char ("▁"),
// prepends it per prepend_scheme and optionally splits before each one.
type metaspacePreTokenizer struct {
	replacement string
	prepend     string // "always", "first" or "never"
	split       bool
}

func (m *metaspacePreTokenizer) preTokenize(in []piece) []piece {
	out := make([]piece, 0, len(in))
	for _, p := range in {
		t := strings.ReplaceAll(p.text, " ", m.replacement)
		if !strings.HasPrefix(t, m.replacement) &&
			(m.prepend == "always" || (m.prepend == "first" && p.atStart)) {
			t = m.replacement + t
		}
		if !m.split {
			out = append(out, piece{text: t, atStart: p.atStart})
			continue
		}
		start := 0
		for i := 1; i <= len(t); i++ {
			if i == len(t) || strings.HasPrefix(t[i:], m.replacement) {
				out = append(out, piece{text: t[start:i], atStart: p.atStart && start == 0})
				start = i
			}
		}
	}
	return out
}

// preTokenizerInfo records facts about the pre-tokenizer that the model and
// decoder need.
type preTokenizerInfo struct {
	byteLevel bool // a ByteLevel pre-tokenizer is present (it must be last)
}

func parsePreTokenizer(raw json.RawMessage, info *preTokenizerInfo) (preTokenizer, error) {
	typ, err := typeTag(raw)
	if err != nil || typ == "" {
		return nil, err
	}
	if info.byteLevel {
		return nil, fmt.Errorf("pre-tokenizer %q after ByteLevel is not supported", typ)
	}
	switch typ {
	case "Sequence":
		seq, err := parseSequence(raw, "pretokenizers", func(r json.RawMessage) (preTokenizer, error) { return parsePreTokenizer(r, info) })
		if err != nil {
			return nil, err
		}
		return preTokenizerSeq(seq), nil
	case "Split":
		var v struct {
			Pattern  patternJSON `json:"pattern"`
			Behavior string      `json:"behavior"`
			Invert   bool        `json:"invert"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		m, err := newPatternMatcher(v.Pattern)
		if err != nil {
			return nil, err
		}
		b, err := parseSplitBehavior(v.Behavior)
		if err != nil {
			return nil, err
		}
		return &splitPreTokenizer{m: m, behavior: b, invert: v.Invert}, nil
	case "ByteLevel":
		v := struct {
			AddPrefixSpace bool `json:"add_prefix_space"`
			UseRegex       bool `json:"use_regex"`
		}{UseRegex: true}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		info.byteLevel = true
		b := &byteLevelPreTokenizer{addPrefixSpace: v.AddPrefixSpace}
		if v.UseRegex {
			m, err := newPatternMatcher(patternJSON{Regex: ptr(gpt2Pattern)})
			if err != nil {
				return nil, err
			}
			b.split = &splitPreTokenizer{m: m, behavior: splitIsolated}
		}
		return b, nil
	case "Digits":
		var v struct {
			Individual bool `json:"individual_digits"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		b := splitContiguous
		if v.Individual {
			b = splitIsolated
		}
		return &splitPreTokenizer{m: runeMatcher(unicode.IsNumber), behavior: b}, nil
	case "Punctuation":
		v := struct {
			Behavior string `json:"behavior"`
		}{Behavior: "Isolated"}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		b, err := parseSplitBehavior(v.Behavior)
		if err != nil {
			return nil, err
		}
		return &splitPreTokenizer{m: runeMatcher(isPunctuation), behavior: b}, nil
	case "WhitespaceSplit":
		return &splitPreTokenizer{m: runeMatcher(unicode.IsSpace), behavior: splitRemoved}, nil
	case "CharDelimiterSplit":
		var v struct {
			Delimiter string `json:"delimiter"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		if utf8.RuneCountInString(v.Delimiter) != 1 {
			return nil, fmt.Errorf("CharDelimiterSplit: delimiter %q is not one character", v.Delimiter)
		}
		return &splitPreTokenizer{m: literalMatcher{lit: v.Delimiter}, behavior: splitRemoved}, nil
	case "Metaspace":
		v := struct {
			Replacement    string `json:"replacement"`
			PrependScheme  string `json:"prepend_scheme"`
			AddPrefixSpace *bool  `json:"add_prefix_space"`
			Split          *bool  `json:"split"`
		}{Replacement: "▁"}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		return newMetaspace(v.Replacement, v.PrependScheme, v.AddPrefixSpace, v.Split), nil
	}
	return nil, fmt.Errorf("pre-tokenizer type %q is not supported", typ)
}

func newMetaspace(replacement, scheme string, addPrefixSpace, split *bool) *metaspacePreTokenizer {
	if replacement == "" {
		replacement = "▁"
	}
	if scheme == "" {
		// Files older than prepend_scheme used add_prefix_space (default true).
		scheme = "always"
		if addPrefixSpace != nil && !*addPrefixSpace {
			scheme = "never"
		}
	}
	return &metaspacePreTokenizer{
		replacement: replacement,
		prepend:     scheme,
		split:       split == nil || *split,
	}
}

func ptr[T any](v T) *T { return &v }
