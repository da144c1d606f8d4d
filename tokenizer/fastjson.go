package tokenizer

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Fast paths for the two large parts of tokenizer.json: the vocab object
// and the merges list (hundreds of thousands of entries). encoding/json's
// reflection is the bulk of load time there. The scanners accept only the
// plain shapes these parts have and report failure on anything else, in
// which case the caller falls back to encoding/json; the raw input has
// already been validated as JSON by the outer decode.

// jsonScanner walks a JSON text.
type jsonScanner struct {
	b   []byte
	pos int
	ok  bool
}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// expect consumes byte c after optional space.
func (s *jsonScanner) expect(c byte) bool {
	s.skipSpace()
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// peek returns the next non-space byte (0 at the end).
func (s *jsonScanner) peek() byte {
	s.skipSpace()
	if s.pos < len(s.b) {
		return s.b[s.pos]
	}
	return 0
}

// str reads a JSON string; escapes are decoded by encoding/json.
func (s *jsonScanner) str() (string, bool) {
	if !s.expect('"') {
		return "", false
	}
	start := s.pos
	escaped := false
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case '\\':
			escaped = true
			s.pos += 2
			continue
		case '"':
			raw := s.b[start:s.pos]
			s.pos++
			if !escaped && utf8.Valid(raw) {
				return string(raw), true
			}
			var out string
			if err := json.Unmarshal(s.b[start-1:s.pos], &out); err != nil {
				return "", false
			}
			return out, true
		}
		s.pos++
	}
	return "", false
}

// int32 reads a non-negative or negative integer.
func (s *jsonScanner) int32() (int32, bool) {
	s.skipSpace()
	start := s.pos
	if s.pos < len(s.b) && s.b[s.pos] == '-' {
		s.pos++
	}
	for s.pos < len(s.b) && s.b[s.pos] >= '0' && s.b[s.pos] <= '9' {
		s.pos++
	}
	v, err := strconv.ParseInt(string(s.b[start:s.pos]), 10, 32)
	return int32(v), err == nil
}

// atEnd tells whether only space remains.
func (s *jsonScanner) atEnd() bool {
	s.skipSpace()
	return s.pos == len(s.b)
}

// fastVocab parses {"token": id, ...}; ok is false if the shape differs.
func fastVocab(raw []byte) (map[string]int32, bool) {
	s := &jsonScanner{b: raw}
	if !s.expect('{') {
		return nil, false
	}
	vocab := make(map[string]int32, len(raw)/16)
	if s.peek() == '}' {
		s.pos++
		return vocab, s.atEnd()
	}
	for {
		key, ok := s.str()
		if !ok || !s.expect(':') {
			return nil, false
		}
		id, ok := s.int32()
		if !ok {
			return nil, false
		}
		vocab[key] = id
		if s.expect(',') {
			continue
		}
		if s.expect('}') && s.atEnd() {
			return vocab, true
		}
		return nil, false
	}
}

// fastMerges parses ["a b", ...] or [["a", "b"], ...]; ok is false if the
// shape differs. Strings are split by parseMergeString.
func fastMerges(raw []byte) ([][2]string, bool, error) {
	s := &jsonScanner{b: raw}
	if !s.expect('[') {
		return nil, false, nil
	}
	out := make([][2]string, 0, len(raw)/12)
	if s.peek() == ']' {
		s.pos++
		return out, s.atEnd(), nil
	}
	for i := 0; ; i++ {
		var pair [2]string
		if s.peek() == '[' {
			s.pos++
			a, ok1 := s.str()
			ok2 := s.expect(',')
			b, ok3 := s.str()
			if !ok1 || !ok2 || !ok3 || !s.expect(']') {
				return nil, false, nil
			}
			pair = [2]string{a, b}
		} else {
			m, ok := s.str()
			if !ok {
				return nil, false, nil
			}
			p, err := parseMergeString(i, m)
			if err != nil {
				return nil, true, err
			}
			pair = p
		}
		out = append(out, pair)
		if s.expect(',') {
			continue
		}
		if s.expect(']') && s.atEnd() {
			return out, true, nil
		}
		return nil, false, nil
	}
}
