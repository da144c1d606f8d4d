package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/vserve/vserve/scheduler"
)

const routeCompletions = "/v1/completions"

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	s.serveGeneration(w, r, routeCompletions, s.prepareCompletion, s.streamCompletion, s.respondCompletion)
}

// respondCompletion writes the non-streaming response of a finished job.
func (s *Server) respondCompletion(w http.ResponseWriter, span RequestSpan, j *job, texts []string, now time.Time) {
	resp := CompletionResponse{ID: j.id, Object: "text_completion", Created: now.Unix(), Model: j.m.Names[0], Usage: j.usage()}
	for _, c := range j.choices {
		prefix := ""
		if j.echo() {
			prefix = j.prompts[c.prompt].text
		}
		ch := CompletionChoice{Index: c.index, Text: prefix + texts[c.index], FinishReason: strPtr(c.finish),
			StopReason: c.stopReason}
		if j.g.numLogprobs >= 0 {
			ch.Logprobs = j.choiceLogprobs(c, c.tokens, c.logprobs, c.promptLogprobs, textLen(prefix))
		}
		if j.g.enginePromptLogprobs >= 0 {
			ch.PromptLogprobs = j.promptLogprobsEntries(c.promptLogprobs)
		}
		resp.Choices = append(resp.Choices, ch)
	}
	span.Departed(j.outcome())
	writeJSON(w, http.StatusOK, resp)
}

// echo reports whether the job echoes its prompts (completions only).
func (j *job) echo() bool { return j.echoPrompt }

func (s *Server) prepareCompletion(w http.ResponseWriter, r *http.Request, span RequestSpan, now time.Time) (*job, *APIError) {
	var req CompletionRequest
	m, aerr := s.readRequest(w, r, &req, &req.Model)
	if aerr != nil {
		return nil, aerr
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return nil, badRequest("suffix", "suffix is not supported.")
	}
	g, aerr := s.parseSampling(m, &req.SamplingFields, maxTokensField{"max_tokens", req.MaxTokens}, now)
	if aerr != nil {
		return nil, aerr
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > s.opts.MaxLogprobs {
			return nil, badRequest("logprobs", "logprobs must be between 0 and %d, got %d.", s.opts.MaxLogprobs, *req.Logprobs)
		}
		g.numLogprobs = *req.Logprobs
	}
	g.enginePromptLogprobs = completionPromptLogprobs(&g, req.Echo)
	prompts, aerr := parsePrompts(req.Prompt, m.Tokenizer)
	if aerr != nil {
		return nil, aerr
	}
	id := s.ids.next("cmpl")
	span.Parsed(requestInfo(id, m, &req.SamplingFields, req.MaxTokens, prompts))
	j, aerr := newJob(s, m, span, id, g, prompts)
	if aerr != nil {
		return nil, aerr
	}
	j.echoPrompt = req.Echo
	return j, nil
}

// completionPromptLogprobs is how many top prompt logprobs the engine
// computes for a completion (< 0: none): prompt_logprobs, or as in vLLM
// logprobs when echo is set without it. A stream shows prompt logprobs only
// through echo, so without echo it computes none.
func completionPromptLogprobs(g *genParams, echo bool) int {
	switch {
	case echo && g.promptLogprobs < 0:
		return g.numLogprobs
	case g.stream && !echo:
		return -1
	}
	return g.promptLogprobs
}

func requestInfo(id string, m *Model, f *SamplingFields, maxTokens *int, prompts []prompt) RequestInfo {
	info := RequestInfo{RequestID: id, Model: m.Names[0], Temperature: f.Temperature, TopP: f.TopP, MaxTokens: maxTokens, N: f.N}
	for _, p := range prompts {
		info.PromptTokens += len(p.ids)
	}
	return info
}

// parsePrompts accepts a string, a list of strings, a list of token ids or
// a list of token-id lists.
func parsePrompts(raw json.RawMessage, tok Tokenizer) ([]prompt, *APIError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, badRequest("prompt", "prompt is required.")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return encodePrompts([]string{one}, tok)
	}
	var texts []string
	if json.Unmarshal(raw, &texts) == nil {
		if len(texts) == 0 {
			return nil, badRequest("prompt", "prompt must not be an empty list.")
		}
		return encodePrompts(texts, tok)
	}
	var ids []int32
	if json.Unmarshal(raw, &ids) == nil {
		return tokenPrompts([][]int32{ids}, tok)
	}
	var lists [][]int32
	if json.Unmarshal(raw, &lists) == nil {
		if len(lists) == 0 {
			return nil, badRequest("prompt", "prompt must not be an empty list.")
		}
		return tokenPrompts(lists, tok)
	}
	return nil, badRequest("prompt", "prompt must be a string, a list of strings, a list of token ids or a list of token-id lists.")
}

func encodePrompts(texts []string, tok Tokenizer) ([]prompt, *APIError) {
	out := make([]prompt, 0, len(texts))
	for _, t := range texts {
		ids, err := tok.Encode(t, true)
		if err != nil {
			return nil, badRequest("prompt", "could not tokenize the prompt: %v", err)
		}
		if len(ids) == 0 {
			return nil, badRequest("prompt", "prompt must not be empty.")
		}
		out = append(out, prompt{ids: ids, text: t})
	}
	return out, nil
}

func tokenPrompts(lists [][]int32, tok Tokenizer) ([]prompt, *APIError) {
	out := make([]prompt, 0, len(lists))
	vocab := tok.VocabSize()
	for _, ids := range lists {
		if len(ids) == 0 {
			return nil, badRequest("prompt", "prompt must not be empty.")
		}
		for _, id := range ids {
			if id < 0 || int(id) >= vocab {
				return nil, badRequest("prompt", "token id %d is out of vocabulary [0, %d).", id, vocab)
			}
		}
		text, err := tok.Decode(ids, false)
		if err != nil {
			return nil, badRequest("prompt", "could not decode the prompt tokens: %v", err)
		}
		out = append(out, prompt{ids: ids, text: text})
	}
	return out, nil
}

// choiceLogprobs builds the legacy logprobs object of (a chunk of) choice
// c: the generated tokens, offset being where their text starts in the
// choice's text. With echo and prompt logprobs (the first chunk when
// streaming), the prompt tokens come first as in vLLM: the first with null
// logprob and top logprobs, the offsets counting token texts from 0.
func (j *job) choiceLogprobs(c *choice, tokens []int32, lps, promptLps []scheduler.TokenLogprobs, offset int) *CompletionLogprobs {
	out := &CompletionLogprobs{Tokens: []string{}, TokenLogprobs: []*float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	if j.echo() && promptLps != nil {
		offset = j.appendPromptTokens(out, j.prompts[c.prompt].ids, promptLps)
	}
	j.appendTokenLogprobs(out, tokens, lps, offset)
	return out
}

// appendTokenLogprobs appends tokens with their logprobs, from offset;
// it returns the offset after them.
func (j *job) appendTokenLogprobs(out *CompletionLogprobs, tokens []int32, lps []scheduler.TokenLogprobs, offset int) int {
	for i, id := range tokens {
		if i >= len(lps) {
			break
		}
		offset = j.appendTokenLogprob(out, id, &lps[i], offset)
	}
	return offset
}

// appendPromptTokens appends the prompt tokens: the first without a
// logprob, then prompt token i with promptLps[i-1]. Offsets start at 0.
func (j *job) appendPromptTokens(out *CompletionLogprobs, ids []int32, promptLps []scheduler.TokenLogprobs) int {
	offset := 0
	for i, id := range ids {
		if i == 0 || i-1 >= len(promptLps) {
			text := j.m.Tokenizer.TokenText(id)
			out.Tokens = append(out.Tokens, text)
			out.TokenLogprobs = append(out.TokenLogprobs, nil)
			out.TopLogprobs = append(out.TopLogprobs, nil)
			out.TextOffset = append(out.TextOffset, offset)
			offset += textLen(text)
			continue
		}
		offset = j.appendTokenLogprob(out, id, &promptLps[i-1], offset)
	}
	return offset
}

func (j *job) appendTokenLogprob(out *CompletionLogprobs, id int32, lp *scheduler.TokenLogprobs, offset int) int {
	tok := j.m.Tokenizer
	text := tok.TokenText(id)
	v := clampLogprob(lp.Logprob)
	out.Tokens = append(out.Tokens, text)
	out.TokenLogprobs = append(out.TokenLogprobs, &v)
	// The top logprobs shown are those asked with logprobs (prompt entries
	// hold prompt_logprobs of them, which may be more) and, as in vLLM and
	// OpenAI's legacy completions, the chosen token: up to logprobs+1.
	alts := lp.Top[:min(len(lp.Top), max(j.g.numLogprobs, 0))]
	top := make(map[string]float64, len(alts)+1)
	top[text] = v
	for _, t := range alts {
		top[tok.TokenText(t.TokenID)] = clampLogprob(t.Logprob)
	}
	out.TopLogprobs = append(out.TopLogprobs, top)
	out.TextOffset = append(out.TextOffset, offset)
	return offset + textLen(text)
}

// textLen is a text's length as text_offset counts it: in characters
// (Unicode code points, as Python's len in vLLM), not bytes.
func textLen(s string) int { return utf8.RuneCountInString(s) }

// clampLogprob bounds a logprob below at -9999, as vLLM does (-Inf is not
// valid JSON).
func clampLogprob(v float32) float64 {
	if !(v > -9999) { // -Inf, and NaN (which JSON cannot carry) from broken numerics
		return -9999
	}
	return float64(v)
}

// promptLogprobsEntries converts prompt logprobs (entry i: prompt token
// i+1) to vLLM's prompt_logprobs: null for the first prompt token, then per
// token {id: {logprob, rank, decoded_token}} with the prompt token first and
// the top k after it in rank order.
func (j *job) promptLogprobsEntries(lps []scheduler.TokenLogprobs) []PromptLogprobsEntry {
	if lps == nil {
		return nil
	}
	tok := j.m.Tokenizer
	out := make([]PromptLogprobsEntry, 1, len(lps)+1)
	for i := range lps {
		lp := &lps[i]
		e := make(PromptLogprobsEntry, 0, len(lp.Top)+1)
		e = append(e, PromptLogprobItem{lp.TokenID, PromptLogprob{clampLogprob(lp.Logprob), lp.Rank, tok.TokenText(lp.TokenID)}})
		for r, t := range lp.Top {
			if t.TokenID == lp.TokenID {
				continue // the prompt token is listed first already
			}
			e = append(e, PromptLogprobItem{t.TokenID, PromptLogprob{clampLogprob(t.Logprob), r + 1, tok.TokenText(t.TokenID)}})
		}
		out = append(out, e)
	}
	return out
}

// fail records the error on the span and writes it.
func (s *Server) fail(w http.ResponseWriter, span RequestSpan, e *APIError) {
	if e.Reason == "" {
		e.Reason = ReasonValidation
		if e.Status >= 500 {
			e.Reason = ReasonException
		}
	}
	span.Aborted(e.Reason, e)
	if e.Status == 499 {
		return // nobody is listening
	}
	writeError(w, e)
}
