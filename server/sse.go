package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/vserve/vserve/scheduler"
)

// sseWriter writes Server-Sent Events, one flush per batch of events.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
	enc *json.Encoder
}

func newSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	return s
}

// event appends one "data: {json}\n\n" event to the pending batch.
func (s *sseWriter) event(v any) {
	s.buf.WriteString("data: ")
	_ = s.enc.Encode(v) // ends with '\n'
	s.buf.WriteByte('\n')
}

// done appends the final "data: [DONE]" event.
func (s *sseWriter) done() { s.buf.WriteString("data: [DONE]\n\n") }

// flush writes the pending batch to the client.
func (s *sseWriter) flush() error {
	if s.buf.Len() == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf.Bytes())
	s.buf.Reset()
	if err != nil {
		return err
	}
	return s.rc.Flush()
}

// streamError ends a stream that failed after the headers were sent: an
// error event, then [DONE].
func (s *Server) streamError(sse *sseWriter, span RequestSpan, e *APIError) {
	span.Aborted(e.Reason, e)
	if e.Status == 499 {
		return
	}
	sse.event(e.body())
	sse.done()
	_ = sse.flush()
}

func (s *Server) streamCompletion(w http.ResponseWriter, r *http.Request, j *job, now time.Time) {
	sse := newSSE(w)
	if err := sse.rc.Flush(); err != nil { // the headers, at once
		s.streamError(sse, j.span, &APIError{Status: 499, Message: err.Error(), Reason: ReasonClientDisconnect})
		return
	}
	chunk := func(c *choice, text string, finish *string) CompletionResponse {
		return CompletionResponse{ID: j.id, Object: "text_completion", Created: now.Unix(), Model: j.m.Names[0],
			Choices: []CompletionChoice{{Index: c.index, Text: text, FinishReason: finish}}}
	}
	offsets := make([]int, len(j.choices))
	// With echo and logprobs the prompt goes out with the first token, as
	// in vLLM, so that its prompt logprobs (which come with the first
	// token) lead the first chunk's logprobs; plain echo goes out at once.
	echoWithFirst := j.echo() && j.g.numLogprobs >= 0
	if j.echo() && !echoWithFirst {
		for _, c := range j.choices {
			text := j.prompts[c.prompt].text
			offsets[c.index] = textLen(text)
			sse.event(chunk(c, text, nil))
		}
	}
	echoed := make([]bool, len(j.choices))
	aerr := j.run(r.Context(), func(ds []delta) error {
		for _, d := range ds {
			var finish *string
			if d.finish != "" {
				finish = strPtr(d.finish)
			}
			text, promptLps := d.text, []scheduler.TokenLogprobs(nil)
			if echoWithFirst && !echoed[d.c.index] {
				echoed[d.c.index] = true
				text = j.prompts[d.c.prompt].text + text
				if promptLps = d.promptLogprobs; promptLps == nil {
					promptLps = []scheduler.TokenLogprobs{} // the prompt tokens, without logprobs
				}
			}
			ch := chunk(d.c, text, finish)
			ch.Choices[0].StopReason = d.stopReason
			next := offsets[d.c.index] + textLen(d.text)
			if j.g.numLogprobs >= 0 {
				lps := j.choiceLogprobs(d.c, d.tokens, d.logprobs, promptLps, offsets[d.c.index])
				ch.Choices[0].Logprobs = lps
				if n := len(lps.TextOffset); promptLps != nil && n > 0 {
					next = lps.TextOffset[n-1] + textLen(lps.Tokens[n-1]) // after the echo: from the token texts
				}
			}
			offsets[d.c.index] = next
			sse.event(ch)
		}
		return sse.flush()
	})
	if aerr != nil {
		s.streamError(sse, j.span, aerr)
		return
	}
	if j.g.includeUsage {
		u := CompletionResponse{ID: j.id, Object: "text_completion", Created: now.Unix(), Model: j.m.Names[0],
			Choices: []CompletionChoice{}, Usage: j.usage()}
		sse.event(u)
	}
	j.span.Departed(j.outcome())
	sse.done()
	_ = sse.flush()
}

func (s *Server) streamChat(w http.ResponseWriter, r *http.Request, j *job, now time.Time) {
	sse := newSSE(w)
	chunk := func(c *choice, d ChatDelta, finish *string) ChatChunk {
		return ChatChunk{ID: j.id, Object: "chat.completion.chunk", Created: now.Unix(), Model: j.m.Names[0],
			Choices: []ChatChunkChoice{{Index: c.index, Delta: d, FinishReason: finish}}}
	}
	if err := sse.rc.Flush(); err != nil { // the headers, at once
		s.streamError(sse, j.span, &APIError{Status: 499, Message: err.Error(), Reason: ReasonClientDisconnect})
		return
	}
	roleSent := false
	aerr := j.run(r.Context(), func(ds []delta) error {
		if !roleSent {
			// As in vLLM, each choice's role chunk goes out with the first
			// output of the request, so that a client's time to first
			// chunk is its time to first token.
			roleSent = true
			for _, c := range j.choices {
				sse.event(chunk(c, ChatDelta{Role: "assistant", Content: strPtr("")}, nil))
			}
		}
		for _, d := range ds {
			if d.text != "" || len(d.tokens) > 0 && j.g.numLogprobs >= 0 {
				text := d.text
				ch := chunk(d.c, ChatDelta{Content: &text}, nil)
				if j.g.numLogprobs >= 0 {
					ch.Choices[0].Logprobs = j.chatLogprobs(d.tokens, d.logprobs)
				}
				sse.event(ch)
			}
			if d.finish != "" {
				ch := chunk(d.c, ChatDelta{}, strPtr(d.finish))
				reason, err := json.Marshal(d.stopReason)
				if err != nil {
					return err
				}
				ch.Choices[0].StopReason = reason
				sse.event(ch)
			}
		}
		return sse.flush()
	})
	if aerr != nil {
		s.streamError(sse, j.span, aerr)
		return
	}
	if j.g.includeUsage {
		sse.event(ChatChunk{ID: j.id, Object: "chat.completion.chunk", Created: now.Unix(), Model: j.m.Names[0],
			Choices: []ChatChunkChoice{}, Usage: j.usage()})
	}
	j.span.Departed(j.outcome())
	sse.done()
	_ = sse.flush()
}
