package scheduler

import "fmt"

// Update applies what executing out produced and returns the per-request
// deltas and the statistics after it. ro.Step must equal out.Step (anything
// else is a caller bug and panics). Tokens for requests that ended or were
// preempted since out was built are ignored, as are tokens for requests
// whose scheduled tokens did not reach the end of their token list (a
// partial prefill chunk samples nothing). Sampled tokens are appended and
// checked in vLLM's order: min_tokens, EOS (unless ignore_eos),
// stop_token_ids, then max_model_len / max_tokens (finish reason length);
// tokens after a stop are dropped. A request that reached the end of its
// tokens but got no token is scheduled again for its last token.
//
// Every Output must be passed to Update exactly once, also when executing
// it failed (pass a nil ro): computed tokens advanced when the step was
// built, and Update is where requests that got no token are rolled back.
// A nil ro ends the step: its requests finish with FinishError (they
// produce no output; the caller reports them, as the engine does), and the
// blocks it entered into the prefix cache leave it, since their K/V was
// never written. The requests of an Output built after it and not yet
// updated finish too (they may have hit those blocks), and that Output's
// blocks leave the cache as well; it must still be passed to Update.
//
// The returned slice is reused by the next Update; NewTokenIDs alias the
// request's token list and must not be modified.
func (s *Scheduler) Update(out *Output, ro *RunnerOutput) ([]RequestOutput, Stats) {
	buf := s.bufferOf(out)
	buf.pending = false
	s.outs = s.outs[:0]
	if ro == nil {
		s.failStep(buf)
	} else {
		if ro.Step != out.Step {
			panic(fmt.Sprintf("scheduler: Update of step %d with the runner output of step %d", out.Step, ro.Step))
		}
		s.applyPromptLogprobs(out.Step, ro.PromptLogprobs)
		s.applySampled(buf, out.Step, ro)
	}
	finished := false
	for i := range buf.sched {
		r := buf.sched[i].r
		switch {
		case r.state == stateFinished:
			finished = true
		case r.state == stateRunning && r.schedStep == out.Step && r.numComputed >= len(r.tokens):
			// No token came back: recompute the last one (unless a later
			// Output scheduled the request again and has advanced it).
			r.numComputed = len(r.tokens) - 1
		}
	}
	if finished {
		s.dropFinishedRunning()
	}
	return s.outs, s.Stats()
}

// failStep ends a step that failed to execute (see Update).
func (s *Scheduler) failStep(buf *outBuf) {
	// The runner may never have seen this Output: the ids it carried as
	// finished go out again (dropping an id twice is harmless; one reused
	// by a live request since is not sent).
	for _, id := range buf.out.FinishedRequestIDs {
		if _, live := s.requests[id]; !live {
			s.finishedPending = append(s.finishedPending, id)
		}
	}
	failed := []*outBuf{buf}
	if other := &s.bufs[(buf.out.Step+1)&1]; other.pending && other.out.Step > buf.out.Step {
		failed = append(failed, other)
	}
	for _, b := range failed {
		s.kv.Uncache(b.committed)
		b.committed = b.committed[:0]
		for i := range b.sched {
			if r := b.sched[i].r; r.state == stateRunning {
				s.removeRunning(r)
				s.finish(r, FinishError, s.step)
			}
		}
	}
}

// bufferOf maps an Output back to its buffer.
func (s *Scheduler) bufferOf(out *Output) *outBuf {
	for i := range s.bufs {
		if &s.bufs[i].out == out {
			return &s.bufs[i]
		}
	}
	panic("scheduler: Update with an Output that this scheduler did not produce")
}

func (s *Scheduler) applySampled(buf *outBuf, step uint64, ro *RunnerOutput) {
	cursor := 0
	for i, id := range ro.ReqIDs {
		r := s.scheduledIn(buf, step, id, &cursor)
		if r == nil || r.state != stateRunning || r.numComputed != len(r.tokens) {
			continue
		}
		var toks []int32
		if i < len(ro.SampledTokenIDs) {
			toks = ro.SampledTokenIDs[i]
		}
		if len(toks) == 0 {
			continue
		}
		start := len(r.tokens)
		reason := FinishNone
		for _, t := range toks {
			r.tokens = append(r.tokens, t)
			if reason = s.checkStop(r); reason != FinishNone {
				break
			}
		}
		first := !r.firstToken
		if first {
			r.firstToken = true
			if s.obs != nil {
				s.obs.FirstToken(r, step)
			}
		}
		o := RequestOutput{
			ID:              r.id,
			Step:            step,
			NewTokenIDs:     r.tokens[start:len(r.tokens):len(r.tokens)],
			FinishReason:    reason,
			NumCachedTokens: r.numCachedTokens,
		}
		if i < len(ro.Logprobs) {
			o.Logprobs = ro.Logprobs[i]
		}
		if first && r.params.PromptLogprobs >= 0 {
			o.PromptLogprobs = r.takePromptLogprobs()
		}
		s.outs = append(s.outs, o)
		if reason != FinishNone {
			s.finish(r, reason, step)
		}
	}
}

// applyPromptLogprobs stores the prompt logprobs of this step's chunks in
// their requests, by prompt position, so that a prefill recomputed after a
// preemption overwrites rather than duplicates. Chunks for requests that
// ended, were not scheduled in step, or already delivered theirs are
// ignored, as are entries outside the prompt.
func (s *Scheduler) applyPromptLogprobs(step uint64, chunks []PromptLogprobsChunk) {
	for i := range chunks {
		c := &chunks[i]
		r, ok := s.requests[c.ReqID]
		if !ok || r.schedStep != step || !r.wantsPromptLogprobs() || c.Start < 1 {
			continue
		}
		if r.promptLogprobs == nil {
			r.promptLogprobs = make([]TokenLogprobs, r.numPrompt-1)
		}
		for j, lp := range c.Logprobs {
			if k := c.Start + j - 1; k < len(r.promptLogprobs) {
				r.promptLogprobs[k] = lp
			}
		}
	}
}

// takePromptLogprobs hands the accumulated prompt logprobs over:
// numPrompt-1 entries (empty, not nil, for a one-token prompt), or nil when
// the runner reported none.
func (r *request) takePromptLogprobs() []TokenLogprobs {
	lps := r.promptLogprobs
	if lps == nil && r.numPrompt == 1 {
		lps = []TokenLogprobs{}
	}
	r.promptLogprobs = nil
	return lps
}

// scheduledIn finds the request id among those scheduled in buf. Runners
// usually answer in schedule order, so a cursor finds it in O(1); otherwise
// it falls back to the id map.
func (s *Scheduler) scheduledIn(buf *outBuf, step uint64, id string, cursor *int) *request {
	if c := *cursor; c < len(buf.sched) && buf.sched[c].r.id == id {
		*cursor = c + 1
		return buf.sched[c].r
	}
	r, ok := s.requests[id]
	if !ok || r.schedStep != step {
		return nil
	}
	return r
}

// checkStop applies the stop conditions to r's last token.
func (s *Scheduler) checkStop(r *request) FinishReason {
	p := &r.params
	n := r.numOutputs()
	if n < p.MinTokens {
		return FinishNone
	}
	last := r.tokens[len(r.tokens)-1]
	if !p.IgnoreEOS {
		for _, e := range r.eos {
			if last == e {
				return FinishStop
			}
		}
	}
	for _, t := range p.StopTokenIDs {
		if last == t {
			return FinishStop
		}
	}
	if len(r.tokens) >= s.cfg.MaxModelLen || n >= p.MaxTokens {
		return FinishLength
	}
	return FinishNone
}

// dropFinishedRunning removes finished requests from the running set,
// keeping the order of the others.
func (s *Scheduler) dropFinishedRunning() {
	kept := s.running[:0]
	for _, r := range s.running {
		if r.state == stateRunning {
			kept = append(kept, r)
		}
	}
	clear(s.running[len(kept):])
	s.running = kept
}
