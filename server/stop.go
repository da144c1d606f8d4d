package server

import (
	"strings"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/scheduler"
)

// stopMatcher finds stop strings in streamed text. It holds back the tail of
// the text that could still be the start of a stop string, so nothing past a
// stop string is ever emitted. As in vLLM, a stop string counts only once
// more than minTokens tokens were generated: it must end in the text of a
// later token (it may begin earlier).
type stopMatcher struct {
	stops     []string
	include   bool // keep the stop string in the output
	held      string
	matched   string // the stop string that matched, once one did
	minTokens int
	tokens    int // pushed with pushToken
}

func newStopMatcher(stops []string, include bool, minTokens int) *stopMatcher {
	m := &stopMatcher{include: include, minTokens: minTokens}
	for _, s := range stops {
		if s == "" {
			continue
		}
		m.stops = append(m.stops, s)
	}
	return m
}

// pushToken adds the text of one more generated token; see push.
func (m *stopMatcher) pushToken(text string) (emit string, stopped bool) {
	m.tokens++
	return m.push(text)
}

// push adds text (the decoder's remainder at the end, or, through
// pushToken, a token's) and returns the text that can be emitted; stopped
// reports that a stop string matched (emit then ends at, or after when
// include is set, the stop string).
func (m *stopMatcher) push(text string) (emit string, stopped bool) {
	if len(m.stops) == 0 {
		return text, false
	}
	buf := m.held + text
	at, which := -1, ""
	if m.tokens > m.minTokens {
		for _, s := range m.stops {
			// Only occurrences that end in text: one within the held
			// tail was passed over (it ended before minTokens).
			from := max(len(m.held)-len(s)+1, 0)
			if i := strings.Index(buf[from:], s); i >= 0 && (at < 0 || from+i < at) {
				at, which = from+i, s
			}
		}
	}
	if at >= 0 {
		m.held, m.matched = "", which
		if m.include {
			return buf[:at+len(which)], true
		}
		return buf[:at], true
	}
	keep := m.partialSuffix(buf)
	m.held = buf[len(buf)-keep:]
	return buf[:len(buf)-keep], false
}

// partialSuffix is the length of the longest suffix of buf that is a proper
// prefix of some stop string.
func (m *stopMatcher) partialSuffix(buf string) int {
	best := 0
	for _, s := range m.stops {
		for n := min(len(s)-1, len(buf)); n > best; n-- {
			if strings.HasSuffix(buf, s[:n]) {
				best = n
				break
			}
		}
	}
	return best
}

// flush returns the held-back text at the end of generation.
func (m *stopMatcher) flush() string {
	h := m.held
	m.held = ""
	return h
}

// engineStopCheck returns the engine.Request.StopCheck that matches stops
// on the engine goroutine with its own decoder and matcher, so that the
// engine ends the request at the token where the handler's matcher, fed
// the same tokens (consume), finds the stop string: no token past it is
// generated or counted, and the engine's finish reason is the response's.
// Like the handler, it leaves out the text of a stop token unless
// includeStop (textOfStopToken). It is nil without stop strings.
func engineStopCheck(dec Decoder, stops []string, minTokens int, includeStop bool) func(token int32, end scheduler.FinishReason) bool {
	m := newStopMatcher(stops, false, minTokens)
	if len(m.stops) == 0 {
		return nil
	}
	return func(token int32, end scheduler.FinishReason) bool {
		if end != scheduler.FinishStop || includeStop {
			if _, stopped := m.pushToken(dec.Add(token)); stopped {
				return true
			}
		}
		if end != scheduler.FinishNone {
			_, stopped := m.push(dec.Flush())
			return stopped
		}
		return false
	}
}

// textOfStopToken reports whether the text of a request's last token is
// part of the output when the scheduler stopped at it (EOS or one of
// stop_token_ids: finish reason stop without a stop string). As in vLLM,
// it is left out unless include_stop_str_in_output is set; the token is
// still counted and has its logprobs.
func textOfStopToken(o engine.Output, includeStop bool) bool {
	return includeStop || o.Finish != scheduler.FinishStop || o.AbortCause == engine.CauseStopString
}
