package server

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/vserve/vserve/scheduler"
)

// maxN bounds n (choices per prompt).
const maxN = 128

// genParams are a request's validated generation settings.
type genParams struct {
	base scheduler.SamplingParams // MaxTokens 0 = default per prompt
	// defaultMaxTokens caps the default max_tokens (the model's
	// max_new_tokens); nil: the context's room.
	defaultMaxTokens *int
	n                int
	stops            []string
	includeStop      bool
	skipSpecial      bool
	numLogprobs      int // < 0: none
	// promptLogprobs is the request's prompt_logprobs (< 0: not given; -1
	// given is stored as the vocabulary size).
	promptLogprobs int
	// enginePromptLogprobs is what the engine computes (< 0: none): the
	// request's prompt_logprobs, or logprobs for echo (completions).
	enginePromptLogprobs int
	stream               bool
	includeUsage         bool
	deadline             time.Time
	timeout              time.Duration
	priority             int
	cacheSalt            string
}

// maxTokensField is the request field that gave max_tokens.
type maxTokensField struct {
	name  string // max_tokens or max_completion_tokens
	value *int   // nil: not given
}

// parseSampling validates the shared fields and converts them. maxTokens is
// the request's max_tokens (or max_completion_tokens) as given.
func (s *Server) parseSampling(m *Model, f *SamplingFields, maxTokensAs maxTokensField, now time.Time) (genParams, *APIError) {
	maxTokens := maxTokensAs.value
	vocab := m.Tokenizer.VocabSize()
	g := genParams{n: 1, numLogprobs: -1, promptLogprobs: -1, enginePromptLogprobs: -1, skipSpecial: true, stream: f.Stream,
		priority: f.Priority, cacheSalt: f.CacheSalt, includeStop: f.IncludeStopStrInOutput}
	if aerr := rejectUnsupported(&f.Unsupported); aerr != nil {
		return g, aerr
	}
	if f.Priority != 0 && !m.PriorityScheduling {
		return g, badRequest("priority", "Got priority %d but priority scheduling is not enabled (--scheduling-policy priority).", f.Priority)
	}
	p := scheduler.DefaultSamplingParams(0)
	if f.N != nil {
		if *f.N < 1 || *f.N > maxN {
			return g, badRequest("n", "n must be between 1 and %d, got %d.", maxN, *f.N)
		}
		g.n = *f.N
	}
	if f.BestOf != nil && *f.BestOf != g.n {
		return g, badRequest("best_of", "best_of is not supported (it must equal n).")
	}
	if maxTokens != nil {
		if *maxTokens < 1 {
			return g, badRequest(maxTokensAs.name, "%s must be at least 1, got %d.", maxTokensAs.name, *maxTokens)
		}
		p.MaxTokens = *maxTokens
	}
	d := &m.Defaults
	g.defaultMaxTokens = d.MaxTokens
	if err := setFloat(&p.Temperature, or(f.Temperature, d.Temperature), "temperature", 0, math.MaxFloat32); err != nil {
		return g, err
	}
	if err := setFloat(&p.TopP, or(f.TopP, d.TopP), "top_p", math.SmallestNonzeroFloat32, 1); err != nil {
		return g, err
	}
	if err := setFloat(&p.MinP, or(f.MinP, d.MinP), "min_p", 0, 1); err != nil {
		return g, err
	}
	if err := setFloat(&p.PresencePenalty, f.PresencePenalty, "presence_penalty", -2, 2); err != nil {
		return g, err
	}
	if err := setFloat(&p.FrequencyPenalty, f.FrequencyPenalty, "frequency_penalty", -2, 2); err != nil {
		return g, err
	}
	if err := setFloat(&p.RepetitionPenalty, or(f.RepetitionPenalty, d.RepetitionPenalty), "repetition_penalty", math.SmallestNonzeroFloat32, math.MaxFloat32); err != nil {
		return g, err
	}
	if topK := or(f.TopK, d.TopK); topK != nil {
		if *topK < -1 {
			return g, badRequest("top_k", "top_k must be -1 or 0 (off) or at least 1, got %d.", *topK)
		}
		p.TopK = max(*topK, 0)
	}
	if f.Seed != nil {
		p.Seed, p.HasSeed = *f.Seed, true
	}
	if f.MinTokens < 0 || (maxTokens != nil && f.MinTokens > *maxTokens) {
		return g, badRequest("min_tokens", "min_tokens must be between 0 and max_tokens, got %d.", f.MinTokens)
	}
	p.MinTokens = f.MinTokens
	p.IgnoreEOS = f.IgnoreEOS
	for _, id := range f.StopTokenIDs {
		if id < 0 || int(id) >= vocab {
			return g, badRequest("stop_token_ids", "stop_token_ids: token id %d is out of range [0, %d).", id, vocab)
		}
	}
	p.StopTokenIDs = f.StopTokenIDs
	if len(f.LogitBias) > 0 {
		p.LogitBias = make(map[int32]float32, len(f.LogitBias))
		for k, v := range f.LogitBias {
			id, err := strconv.Atoi(k)
			if err != nil || id < 0 || id >= vocab {
				return g, badRequest("logit_bias", "logit_bias: key %q is not a token id in [0, %d).", k, vocab)
			}
			if math.IsNaN(v) {
				return g, badRequest("logit_bias", "logit_bias: value for token %d is not a number.", id)
			}
			p.LogitBias[int32(id)] = float32(min(max(v, -100), 100)) // clamped, as in vLLM
		}
	}
	for _, st := range f.Stop {
		if st == "" {
			return g, badRequest("stop", "stop strings must not be empty.")
		}
	}
	if len(f.Stop) > 16 {
		return g, badRequest("stop", "at most 16 stop strings are allowed, got %d.", len(f.Stop))
	}
	g.stops = f.Stop
	if f.SkipSpecialTokens != nil {
		g.skipSpecial = *f.SkipSpecialTokens
	}
	if f.StreamOptions != nil {
		if !f.Stream {
			return g, badRequest("stream_options", "stream_options is only allowed when stream is true.")
		}
		g.includeUsage = f.StreamOptions.IncludeUsage
	}
	if f.PromptLogprobs != nil {
		k, aerr := s.checkPromptLogprobs(*f.PromptLogprobs, f.Stream, vocab)
		if aerr != nil {
			return g, aerr
		}
		g.promptLogprobs = k
	}
	g.timeout = s.opts.RequestTimeout
	if f.Timeout != nil {
		if *f.Timeout <= 0 || math.IsNaN(*f.Timeout) || *f.Timeout > 1e6 {
			return g, badRequest("timeout", "timeout must be a positive number of seconds, got %v.", *f.Timeout)
		}
		g.timeout = time.Duration(*f.Timeout * float64(time.Second))
	}
	if g.timeout > 0 {
		g.deadline = now.Add(g.timeout)
	}
	g.base = p
	return g, nil
}

// checkPromptLogprobs validates prompt_logprobs as vLLM does: not with
// streaming unless 0, not negative except -1 (the whole vocabulary, which
// exceeds any max logprobs below the vocabulary size), at most the
// server's max logprobs. It returns the number of top entries (-1 becomes
// the vocabulary size).
func (s *Server) checkPromptLogprobs(k int, stream bool, vocab int) (int, *APIError) {
	const param = "prompt_logprobs"
	if stream && (k > 0 || k == -1) {
		return 0, badRequest(param, "`prompt_logprobs` are not available when `stream=True`.")
	}
	if k < 0 && k != -1 {
		return 0, badRequest(param, "`prompt_logprobs` must be a positive value or -1.")
	}
	if k == -1 {
		k = vocab
	}
	if k > s.opts.MaxLogprobs {
		return 0, badRequest(param, "Requested prompt logprobs of %d, which is greater than max allowed: %d", k, s.opts.MaxLogprobs)
	}
	return k, nil
}

func setFloat(dst *float32, v *float64, name string, lo, hi float64) *APIError {
	if v == nil {
		return nil
	}
	if math.IsNaN(*v) || *v < lo || *v > hi {
		if hi == math.MaxFloat32 {
			return badRequest(name, "%s must be at least %v, got %v.", name, lo, *v)
		}
		return badRequest(name, "%s must be in [%v, %v], got %v.", name, lo, hi, *v)
	}
	*dst = float32(*v)
	return nil
}

// or returns v when it is set, else the default d.
func or[T any](v, d *T) *T {
	if v != nil {
		return v
	}
	return d
}

// fitContext applies the default max_tokens (what the context leaves, at
// most defaultCap when that is set) and checks the context length of one
// prompt, with vLLM's message.
func fitContext(p scheduler.SamplingParams, promptLen, maxModelLen int, defaultCap *int) (scheduler.SamplingParams, *APIError) {
	if p.MaxTokens == 0 {
		if promptLen >= maxModelLen {
			return p, &APIError{Status: 400, Type: "invalid_request_error", Param: "input_tokens", Reason: ReasonValidation,
				Message: fmt.Sprintf("This model's maximum context length is %d tokens. However, your prompt contains at least %d input tokens, which leaves no room for output tokens. Please reduce the length of the input prompt.", maxModelLen, promptLen)}
		}
		p.MaxTokens = maxModelLen - promptLen
		if defaultCap != nil {
			p.MaxTokens = min(p.MaxTokens, *defaultCap)
		}
		if p.MinTokens > p.MaxTokens {
			return p, badRequest("min_tokens", "min_tokens (%d) is larger than the %d output tokens left by the context length.", p.MinTokens, p.MaxTokens)
		}
		return p, nil
	}
	if total := promptLen + p.MaxTokens; total > maxModelLen {
		return p, &APIError{Status: 400, Type: "invalid_request_error", Param: "input_tokens", Reason: ReasonValidation,
			Message: fmt.Sprintf("This model's maximum context length is %d tokens. However, you requested %d output tokens and your prompt contains at least %d input tokens, for a total of at least %d tokens. Please reduce the length of the input prompt or the number of requested output tokens.", maxModelLen, p.MaxTokens, promptLen, total)}
	}
	return p, nil
}

// rejectUnsupported answers 400 for a feature vserve does not implement
// (Unsupported), rather than serving the request without it.
func rejectUnsupported(u *Unsupported) *APIError {
	if rf := u.ResponseFormat; rf != nil && rf.Type != "" && rf.Type != "text" {
		return badRequest("response_format", "response_format type %q is not supported: vserve has no structured output; use type \"text\".", rf.Type)
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{
		{"guided_json", u.GuidedJSON}, {"guided_regex", u.GuidedRegex}, {"guided_choice", u.GuidedChoice},
		{"guided_grammar", u.GuidedGrammar}, {"structured_outputs", u.StructuredOutputs},
	} {
		if present(f.raw) {
			return badRequest(f.name, "%s is not supported: vserve has no structured output.", f.name)
		}
	}
	return nil
}

// rejectUnsupportedTools answers 400 for tool or function calling, which
// vserve does not implement; tool_choice "none" (or "auto" without tools)
// asks for none and is served.
func rejectUnsupportedTools(req *ChatRequest) *APIError {
	if present(req.Tools) && string(req.Tools) != "[]" {
		return badRequest("tools", "tools are not supported: vserve has no tool calling.")
	}
	if present(req.Functions) && string(req.Functions) != "[]" {
		return badRequest("functions", "functions are not supported: vserve has no function calling.")
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"tool_choice", req.ToolChoice}, {"function_call", req.FunctionCall}} {
		var choice string
		if present(f.raw) && (json.Unmarshal(f.raw, &choice) != nil || (choice != "none" && choice != "auto")) {
			return badRequest(f.name, "%s %s is not supported: vserve has no tool calling.", f.name, f.raw)
		}
	}
	return nil
}

// present reports whether a raw JSON field was given and not null.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}
