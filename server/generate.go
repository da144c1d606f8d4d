package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/scheduler"
)

// prompt is one tokenised prompt of a request.
type prompt struct {
	ids  []int32
	text string // the prompt text (decoded for token prompts), for echo
}

// choice is one engine sub-request: prompt p, sample i.
type choice struct {
	index  int // choice index in the response
	prompt int
	params scheduler.SamplingParams
	stream *engine.Stream
	dec    Decoder
	stop   *stopMatcher
	// engineStop matches the stop strings in the engine (engine.Request's
	// StopCheck); nil without stop strings.
	engineStop func(token int32, end scheduler.FinishReason) bool

	text     strings.Builder // non-streaming: the accumulated text
	tokens   []int32         // tokens whose text was emitted (for logprobs)
	logprobs []scheduler.TokenLogprobs
	// promptLogprobs arrive with the first token (entry i: prompt token i+1).
	promptLogprobs []scheduler.TokenLogprobs
	numTokens      int
	cached         int
	finish         string
	stopReason     any // vLLM's stop_reason: the stop string or stop token id, else nil
	done           bool
	times          engine.RequestTimes
	err            *APIError
}

// delta is what one choice produced in one wake-up.
type delta struct {
	c        *choice
	text     string
	tokens   []int32
	logprobs []scheduler.TokenLogprobs
	// promptLogprobs is set on the choice's first delta when they were
	// computed.
	promptLogprobs []scheduler.TokenLogprobs
	finish         string // set when the choice ended
	stopReason     any    // with finish: the choice's stopReason
}

// job runs the choices of one API request through the engine.
type job struct {
	s       *Server
	m       *Model
	span    RequestSpan
	id      string
	g       genParams
	prompts []prompt
	choices []*choice
	notify  chan struct{}
	first   bool // FirstResponseFromCore was reported
	// echoPrompt prefixes each choice's text with its prompt (completions).
	echoPrompt bool
}

// maxGenerations bounds prompts × n of one request when the engine's
// queue is unbounded; otherwise the queue bound does, since the engine
// admits a request's generations all at once.
const maxGenerations = 4096

func newJob(s *Server, m *Model, span RequestSpan, id string, g genParams, prompts []prompt) (*job, *APIError) {
	// Before anything is allocated per generation.
	limit := maxGenerations
	if q := m.Engine.MaxQueuedRequests(); q > 0 {
		limit = q
	}
	if total := len(prompts) * g.n; total > limit {
		return nil, badRequest("n", "The request asks for %d generations (%d prompts × n=%d); the server takes at most %d at once.",
			total, len(prompts), g.n, limit)
	}
	j := &job{s: s, m: m, span: span, id: id, g: g, prompts: prompts, notify: make(chan struct{}, 1)}
	for pi, pr := range prompts {
		p, aerr := fitContext(g.base, len(pr.ids), m.MaxModelLen, g.defaultMaxTokens)
		if aerr != nil {
			return nil, aerr
		}
		for i := 0; i < g.n; i++ {
			cp := p
			if cp.HasSeed {
				cp.Seed += int64(i) // distinct samples for n > 1, reproducible
			}
			cp.Logprobs = g.numLogprobs
			cp.PromptLogprobs = g.enginePromptLogprobs
			c := &choice{index: pi*g.n + i, prompt: pi, params: cp,
				dec: m.Tokenizer.NewDecoder(pr.ids, g.skipSpecial), stop: newStopMatcher(g.stops, g.includeStop, cp.MinTokens)}
			if len(g.stops) > 0 {
				c.engineStop = engineStopCheck(m.Tokenizer.NewDecoder(pr.ids, g.skipSpecial), g.stops, cp.MinTokens, g.includeStop)
			}
			j.choices = append(j.choices, c)
		}
	}
	return j, nil
}

// start hands every choice to the engine, all at once.
func (j *job) start(ctx context.Context) *APIError {
	headers := j.span.TraceHeaders()
	eos := j.m.Tokenizer.EOSTokenIDs()
	handoff := time.Now()
	rs := make([]*engine.Request, len(j.choices))
	for k, c := range j.choices {
		rs[k] = &engine.Request{
			ID: fmt.Sprintf("%s-%d", j.id, k), PromptTokenIDs: j.prompts[c.prompt].ids, Params: c.params,
			EOSTokenIDs: eos, Priority: j.g.priority, CacheSalt: j.g.cacheSalt, Deadline: j.g.deadline,
			TraceHeaders: headers, Notify: j.notify, StopCheck: c.engineStop,
		}
	}
	// All choices are admitted or none: a job that does not fit the queue
	// starts nothing that would then be aborted.
	streams, err := j.m.Engine.AddAll(ctx, rs)
	if err != nil {
		return engineError(err)
	}
	for k, c := range j.choices {
		c.stream = streams[k]
	}
	j.span.HandoffToCore(handoff)
	return nil
}

func engineError(err error) *APIError {
	switch {
	case errors.Is(err, engine.ErrQueueFull):
		return &APIError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "queue_full",
			Message: "The server's waiting queue is full; retry later.", RetryAfter: 1, Reason: ReasonOverloaded}
	case errors.Is(err, engine.ErrGroupTooLarge): // newJob checks this first
		return badRequest("n", "%v", err)
	case errors.Is(err, engine.ErrShuttingDown):
		return unavailable(ReasonShutdown, "The server is shutting down.")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &APIError{Status: 499, Type: "invalid_request_error", Message: "client closed request", Reason: ReasonClientDisconnect}
	}
	return serverError("engine: %v", err)
}

// closeAll releases every stream (aborting unfinished choices).
func (j *job) closeAll() {
	for _, c := range j.choices {
		if c.stream != nil {
			c.stream.Close()
		}
	}
}

// run waits for outputs and hands each wake-up's deltas to emit until every
// choice is done. It returns the first choice error, or a client-disconnect
// error when ctx ends.
// serveGeneration runs what every generation endpoint shares: the API span
// from receipt (ended on every path), preparation, the hand-off to the
// engine, then either streaming or collecting the texts for respond.
func (s *Server) serveGeneration(w http.ResponseWriter, r *http.Request, route string,
	prepare func(http.ResponseWriter, *http.Request, RequestSpan, time.Time) (*job, *APIError),
	stream func(http.ResponseWriter, *http.Request, *job, time.Time),
	respond func(http.ResponseWriter, RequestSpan, *job, []string, time.Time)) {
	span := s.opts.Telemetry.Arrived(r, route)
	defer span.End()
	now := time.Now()
	j, aerr := prepare(w, r, span, now)
	if aerr != nil {
		s.fail(w, span, aerr)
		return
	}
	defer j.closeAll()
	if aerr := j.start(r.Context()); aerr != nil {
		s.fail(w, span, aerr)
		return
	}
	if j.g.stream {
		stream(w, r, j, now)
		return
	}
	texts, aerr := j.collect(r.Context())
	if aerr != nil {
		s.fail(w, span, aerr)
		return
	}
	respond(w, span, j, texts, now)
}

// collect runs a non-streaming job to its end and returns each choice's
// text, keeping its tokens and logprobs on the choice.
func (j *job) collect(ctx context.Context) ([]string, *APIError) {
	texts := make([]strings.Builder, len(j.choices))
	if aerr := j.run(ctx, func(ds []delta) error {
		for _, d := range ds {
			texts[d.c.index].WriteString(d.text)
			d.c.tokens = append(d.c.tokens, d.tokens...)
			d.c.logprobs = append(d.c.logprobs, d.logprobs...)
		}
		return nil
	}); aerr != nil {
		return nil, aerr
	}
	out := make([]string, len(texts))
	for i := range texts {
		out[i] = texts[i].String()
	}
	return out, nil
}

func (j *job) run(ctx context.Context, emit func([]delta) error) *APIError {
	open := len(j.choices)
	var ds []delta
	for open > 0 {
		ds = ds[:0]
		for _, c := range j.choices {
			if c.done {
				continue
			}
			o, ok, err := c.stream.TryNext()
			if err == io.EOF {
				c.done = true
				open--
				continue
			}
			if !ok {
				continue
			}
			d := j.consume(c, o)
			if c.done {
				open--
				if c.err != nil {
					return c.err
				}
			}
			if d.text != "" || len(d.tokens) > 0 || d.finish != "" {
				ds = append(ds, d)
			}
		}
		if len(ds) > 0 {
			if err := emit(ds); err != nil {
				return &APIError{Status: 499, Message: "write failed: " + err.Error(), Reason: ReasonClientDisconnect}
			}
			continue
		}
		if open == 0 {
			break
		}
		select {
		case <-j.notify:
		case <-ctx.Done():
			return &APIError{Status: 499, Type: "invalid_request_error", Message: "client closed request", Reason: ReasonClientDisconnect}
		}
	}
	return nil
}

// consume detokenises one engine output of c, applies the stop strings and
// records the finish.
func (j *job) consume(c *choice, o engine.Output) delta {
	d := delta{c: c}
	if !j.first && !o.FirstTokenTime.IsZero() {
		j.first = true
		j.span.FirstResponseFromCore(o.FirstTokenTime)
	}
	c.cached = max(c.cached, o.NumCachedTokens)
	if o.PromptLogprobs != nil {
		c.promptLogprobs, d.promptLogprobs = o.PromptLogprobs, o.PromptLogprobs
	}
	var sb strings.Builder
	for i, tok := range o.TokenIDs {
		c.numTokens++
		d.tokens = append(d.tokens, tok)
		if i < len(o.Logprobs) {
			d.logprobs = append(d.logprobs, o.Logprobs[i])
		}
		if i == len(o.TokenIDs)-1 && o.Finished() && !textOfStopToken(o, j.g.includeStop) {
			break
		}
		emit, stopped := c.stop.pushToken(c.dec.Add(tok))
		sb.WriteString(emit)
		if stopped { // the engine ended the request at this token (engineStop)
			c.stopReason = c.stop.matched
			j.end(c, &d, "stop", o.Times)
			d.text = sb.String()
			return d
		}
	}
	if o.Finished() {
		switch o.Finish {
		case scheduler.FinishStop, scheduler.FinishLength:
			if emit, stopped := c.stop.push(c.dec.Flush()); stopped {
				sb.WriteString(emit)
				c.stopReason = c.stop.matched
				j.end(c, &d, "stop", o.Times)
				break
			} else {
				sb.WriteString(emit)
			}
			sb.WriteString(c.stop.flush())
			if o.Finish == scheduler.FinishStop && len(o.TokenIDs) > 0 {
				c.stopReason = j.stopTokenReason(c, o.TokenIDs[len(o.TokenIDs)-1])
			}
			j.end(c, &d, string(o.Finish), o.Times)
		case scheduler.FinishAbort:
			j.end(c, &d, "abort", o.Times)
			c.err = abortError(o.AbortCause, j.g.timeout)
		default:
			j.end(c, &d, "error", o.Times)
			c.err = serverError("generation failed: %v", o.Err)
		}
	}
	d.text = sb.String()
	return d
}

// stopTokenReason is the stop_reason of a choice the scheduler stopped at
// token tok, as in vLLM: nil for the tokenizer's EOS token (unless
// ignore_eos), else the token id, which is one of stop_token_ids or an EOS
// id that generation_config.json adds (vLLM makes those stop token ids).
func (j *job) stopTokenReason(c *choice, tok int32) any {
	eos := j.m.Tokenizer.EOSTokenIDs()
	if len(eos) > 0 && tok == eos[0] && !c.params.IgnoreEOS {
		return nil
	}
	if slices.Contains(c.params.StopTokenIDs, tok) || !c.params.IgnoreEOS && slices.Contains(eos, tok) {
		return tok
	}
	return nil
}

func (j *job) end(c *choice, d *delta, finish string, times engine.RequestTimes) {
	c.finish, d.finish, c.done, c.times = finish, finish, true, times
	d.stopReason = c.stopReason
	if c.times.Finished.IsZero() {
		c.times.Finished = time.Now()
	}
}

func abortError(cause string, timeout time.Duration) *APIError {
	switch cause {
	case engine.CauseTimeout:
		return &APIError{Status: http.StatusRequestTimeout, Type: "timeout_error", Code: "timeout",
			Message: fmt.Sprintf("The request did not finish within its timeout of %v.", timeout), Reason: ReasonTimeout}
	case engine.CauseShutdown:
		return unavailable(ReasonShutdown, "The server is shutting down.")
	}
	return &APIError{Status: 499, Message: "request aborted: " + cause, Reason: ReasonClientDisconnect}
}

// usage sums the token accounting of the job.
func (j *job) usage() *Usage {
	u := &Usage{PromptTokensDetails: &PromptTokensDetails{}}
	cached := make([]int, len(j.prompts))
	for _, p := range j.prompts {
		u.PromptTokens += len(p.ids)
	}
	for _, c := range j.choices {
		u.CompletionTokens += c.numTokens
		cached[c.prompt] = max(cached[c.prompt], c.cached)
	}
	for _, n := range cached {
		u.PromptTokensDetails.CachedTokens += n
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

func (j *job) outcome() Outcome {
	o := Outcome{CompletionTokens: j.usage().CompletionTokens}
	if len(j.choices) > 0 {
		o.Times = j.choices[0].times
	}
	return o
}

func strPtr(s string) *string { return &s }
