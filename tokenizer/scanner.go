package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Hand-written scanners for the pre-tokenizer patterns of GPT-2, Llama 3 and
// Qwen2. They return the same matches as the regexes (a fuzz test checks
// them against regexp2) at several times the speed.

const (
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// knownScanner returns a scanner for a well-known pattern, or nil.
func knownScanner(pattern string) matcher {
	switch pattern {
	case gpt2Pattern:
		return gpt2Scanner{}
	case llama3Pattern:
		return llama3Scanner{maxDigits: 3}
	case qwen2Pattern:
		return llama3Scanner{maxDigits: 1}
	}
	return nil
}

// Character classes of the patterns: \p{L}, \p{N}, \s and the rest.
const (
	classOther uint8 = iota
	classLetter
	classNumber
	classSpace
)

// asciiClass is the class of each ASCII character.
var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		t[r] = slowClass(r)
	}
	return t
}()

func slowClass(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	case unicode.IsSpace(r):
		return classSpace
	}
	return classOther
}

func classOf(r rune) uint8 {
	if r >= 0 && r < utf8.RuneSelf {
		return asciiClass[r]
	}
	if r < 0 {
		return classOther
	}
	return slowClass(r)
}

func isLetter(r rune) bool { return classOf(r) == classLetter }
func isNumber(r rune) bool { return classOf(r) == classNumber }
func isSpace(r rune) bool  { return classOf(r) == classSpace }
func isOther(r rune) bool  { return r >= 0 && classOf(r) == classOther }

// runeAt decodes the rune at s[i:]; it returns size 0 at the end.
func runeAt(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// skipWhile returns the end of the run of runes from i that satisfy f.
func skipWhile(s string, i int, f func(rune) bool) int {
	for i < len(s) {
		r, n := runeAt(s, i)
		if !f(r) {
			break
		}
		i += n
	}
	return i
}

// contraction matches 's 't 're 've 'm 'll 'd at i (ASCII case-insensitive
// when fold), returning the end or -1.
func contraction(s string, i int, fold bool) int {
	if i+1 >= len(s) || s[i] != '\'' {
		return -1
	}
	lower := func(c byte) byte {
		if fold && c >= 'A' && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	switch lower(s[i+1]) {
	case 's', 't', 'm', 'd':
		return i + 2
	}
	if i+2 < len(s) {
		switch string([]byte{lower(s[i+1]), lower(s[i+2])}) {
		case "re", "ve", "ll":
			return i + 3
		}
	}
	return -1
}

// whitespaceEnd implements `\s+(?!\S)|\s+` at i (s[i] is whitespace): the
// whole run when it reaches the end or has one rune, else the run less its
// last rune, which then starts the next word.
func whitespaceEnd(s string, i int) int {
	j := skipWhile(s, i, isSpace)
	if j == len(s) {
		return j
	}
	_, lastSize := utf8.DecodeLastRuneInString(s[i:j])
	if j-lastSize > i {
		return j - lastSize
	}
	return j
}

type gpt2Scanner struct{}

func (sc gpt2Scanner) findAll(s string) [][2]int { return collectMatches(sc, s) }

// eachMatch calls fn for every match in order; the matches of these
// patterns cover the whole input.
func (gpt2Scanner) eachMatch(s string, fn func(start, end int)) {
	for i := 0; i < len(s); {
		end := gpt2MatchAt(s, i)
		fn(i, end)
		i = end
	}
}

// coveringScanner is a matcher whose matches tile the input, so that an
// Isolated split can emit them directly.
type coveringScanner interface {
	eachMatch(s string, fn func(start, end int))
}

func collectMatches(sc coveringScanner, s string) [][2]int {
	out := make([][2]int, 0, len(s)/4+1)
	sc.eachMatch(s, func(i, j int) { out = append(out, [2]int{i, j}) })
	return out
}

func gpt2MatchAt(s string, i int) int {
	if e := contraction(s, i, false); e > 0 {
		return e
	}
	r, _ := runeAt(s, i)
	j, rj := i, r
	if r == ' ' {
		if r2, _ := runeAt(s, i+1); r2 >= 0 && !isSpace(r2) {
			j, rj = i+1, r2
		}
	}
	switch {
	case isLetter(rj):
		return skipWhile(s, j, isLetter)
	case isNumber(rj):
		return skipWhile(s, j, isNumber)
	case isOther(rj):
		return skipWhile(s, j, isOther)
	}
	return whitespaceEnd(s, i)
}

type llama3Scanner struct{ maxDigits int }

func (sc llama3Scanner) findAll(s string) [][2]int { return collectMatches(sc, s) }

func (sc llama3Scanner) eachMatch(s string, fn func(start, end int)) {
	for i := 0; i < len(s); {
		end := sc.matchAt(s, i)
		fn(i, end)
		i = end
	}
}

func isCRLF(r rune) bool { return r == '\r' || r == '\n' }

func (sc llama3Scanner) matchAt(s string, i int) int {
	if e := contraction(s, i, true); e > 0 {
		return e
	}
	r, n := runeAt(s, i)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(r) {
		return skipWhile(s, i, isLetter)
	}
	if !isCRLF(r) && !isNumber(r) {
		if r2, _ := runeAt(s, i+n); isLetter(r2) {
			return skipWhile(s, i+n, isLetter)
		}
	}
	// \p{N}{1,maxDigits}
	if isNumber(r) {
		j := i
		for k := 0; k < sc.maxDigits; k++ {
			rk, nk := runeAt(s, j)
			if nk == 0 || !isNumber(rk) {
				break
			}
			j += nk
		}
		return j
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	j, rj := i, r
	if r == ' ' {
		if r2, _ := runeAt(s, i+1); r2 >= 0 && isOther(r2) {
			j, rj = i+1, r2
		}
	}
	if isOther(rj) {
		j = skipWhile(s, j, isOther)
		return skipWhile(s, j, isCRLF)
	}
	// \s*[\r\n]+ : up to the last CR/LF of the whitespace run.
	end := skipWhile(s, i, isSpace)
	lastNL := -1
	for k := i; k < end; {
		rk, nk := runeAt(s, k)
		if isCRLF(rk) {
			lastNL = k + nk
		}
		k += nk
	}
	if lastNL > 0 {
		return lastNL
	}
	return whitespaceEnd(s, i)
}
