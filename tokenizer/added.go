package tokenizer

import (
	"sort"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens.
type addedToken struct {
	content    string
	id         int32
	special    bool
	lstrip     bool
	rstrip     bool
	singleWord bool
	normalized bool
}

// segment is a part of the input: either an added token (id >= 0) or text
// to run through normalization, pre-tokenization and the model (id < 0).
type segment struct {
	text  string
	id    int32
	start int // byte offset in the string that was split
}

// addedMatcher finds added tokens in text, leftmost-longest as HF's
// aho-corasick splitter does.
type addedMatcher struct {
	byFirst [256][]*addedToken // candidates by first byte, longest first
	count   int
}

// newAddedMatcher indexes tokens by the spelling returned by spell (the raw
// content, or the normalized content for normalized tokens).
func newAddedMatcher(tokens []*addedToken, spell func(*addedToken) string) *addedMatcher {
	m := &addedMatcher{}
	type entry struct {
		tok  *addedToken
		text string
	}
	for _, t := range tokens {
		s := spell(t)
		if s == "" {
			continue
		}
		cp := *t
		cp.content = s
		m.byFirst[s[0]] = append(m.byFirst[s[0]], &cp)
		m.count++
	}
	for i := range m.byFirst {
		c := m.byFirst[i]
		sort.SliceStable(c, func(a, b int) bool { return len(c[a].content) > len(c[b].content) })
	}
	return m
}

// split cuts text into segments; text between added tokens has id -1.
func (m *addedMatcher) split(text string, base int) []segment {
	if m == nil || m.count == 0 {
		return []segment{{text: text, id: -1, start: base}}
	}
	var out []segment
	last := 0 // end of the previous emitted segment
	for i := 0; i < len(text); {
		tok, end := m.matchAt(text, i)
		if tok == nil {
			i++
			continue
		}
		start := i
		if tok.lstrip {
			for start > last {
				r, size := utf8.DecodeLastRuneInString(text[last:start])
				if !unicode.IsSpace(r) {
					break
				}
				start -= size
			}
		}
		if tok.rstrip {
			for end < len(text) {
				r, size := utf8.DecodeRuneInString(text[end:])
				if !unicode.IsSpace(r) {
					break
				}
				end += size
			}
		}
		if start > last {
			out = append(out, segment{text: text[last:start], id: -1, start: base + last})
		}
		out = append(out, segment{text: text[start:end], id: tok.id, start: base + start})
		last, i = end, end
	}
	if last < len(text) {
		out = append(out, segment{text: text[last:], id: -1, start: base + last})
	}
	return out
}

// matchAt returns the longest added token that matches at text[i:].
func (m *addedMatcher) matchAt(text string, i int) (*addedToken, int) {
	for _, t := range m.byFirst[text[i]] {
		if len(t.content) > len(text)-i || text[i:i+len(t.content)] != t.content {
			continue
		}
		end := i + len(t.content)
		if t.singleWord && !isWordBoundary(text, i, end) {
			continue
		}
		return t, end
	}
	return nil, 0
}

func isWordBoundary(text string, start, end int) bool {
	isWord := func(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }
	if start > 0 {
		r, _ := utf8.DecodeLastRuneInString(text[:start])
		if isWord(r) {
			return false
		}
	}
	if end < len(text) {
		r, _ := utf8.DecodeRuneInString(text[end:])
		if isWord(r) {
			return false
		}
	}
	return true
}
