package tokenizer

import "strings"

// StopMatcher finds stop strings in streamed text that arrives in pieces
// (token deltas), so a stop string split across tokens is still found. Text
// that could be the beginning of a stop string is held back until it is
// known not to be one. On a match the text before the stop string is
// emitted and the stop string itself is dropped, as vLLM does by default.
// Not safe for concurrent use.
type StopMatcher struct {
	stops   []string
	held    string
	stopped bool
}

// NewStopMatcher returns a matcher for the given stop strings; empty strings
// are ignored. With no stop strings Push passes text through.
func NewStopMatcher(stops []string) *StopMatcher {
	m := &StopMatcher{}
	for _, s := range stops {
		if s != "" {
			m.stops = append(m.stops, s)
		}
	}
	return m
}

// Push adds streamed text. It returns the text that can be emitted now and
// whether a stop string was found (after which Push returns "", true).
// When several stop strings occur, the one that starts first wins.
func (m *StopMatcher) Push(text string) (emit string, stopped bool) {
	if m.stopped {
		return "", true
	}
	if len(m.stops) == 0 {
		return text, false
	}
	buf := m.held + text
	if at := m.firstMatch(buf); at >= 0 {
		m.stopped = true
		m.held = ""
		return buf[:at], true
	}
	keep := m.partialSuffixLen(buf)
	m.held = buf[len(buf)-keep:]
	return buf[:len(buf)-keep], false
}

// Flush returns the held-back text at the end of the stream (it was not a
// stop string after all).
func (m *StopMatcher) Flush() string {
	h := m.held
	m.held = ""
	return h
}

// Stopped tells whether a stop string has been found.
func (m *StopMatcher) Stopped() bool { return m.stopped }

// firstMatch returns the byte index of the earliest stop string in buf, or
// -1.
func (m *StopMatcher) firstMatch(buf string) int {
	best := -1
	for _, s := range m.stops {
		if i := strings.Index(buf, s); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	return best
}

// partialSuffixLen is the length of the longest suffix of buf that is a
// proper prefix of some stop string.
func (m *StopMatcher) partialSuffixLen(buf string) int {
	longest := 0
	for _, s := range m.stops {
		for n := min(len(s)-1, len(buf)); n > longest; n-- {
			if strings.HasSuffix(buf, s[:n]) {
				longest = n
				break
			}
		}
	}
	return longest
}
