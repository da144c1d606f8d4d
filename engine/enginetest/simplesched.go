package enginetest

import (
	"fmt"
	"slices"

	"github.com/vserve/vserve/scheduler"
)

// SimpleScheduler is a minimal stand-in for scheduler.Scheduler in engine
// and server tests that do not care about KV blocks: FCFS, at most MaxSeqs
// running, every running request's remaining tokens scheduled each step, the
// scheduler's stop checks (min_tokens, EOS unless ignore_eos, stop ids,
// max_tokens). Tests that check KV accounting use the real scheduler.
type SimpleScheduler struct {
	MaxSeqs int // 0: unbounded

	step     uint64
	waiting  []*simpleReq
	running  []*simpleReq
	finished []string
	byID     map[string]*simpleReq
}

type simpleReq struct {
	r        *scheduler.Request
	outputs  []int32
	computed int
	started  bool
}

// AddRequest queues r.
func (s *SimpleScheduler) AddRequest(r *scheduler.Request) error {
	if s.byID == nil {
		s.byID = map[string]*simpleReq{}
	}
	if _, dup := s.byID[r.ID]; dup {
		return fmt.Errorf("duplicate id %q", r.ID)
	}
	q := &simpleReq{r: r}
	s.byID[r.ID] = q
	s.waiting = append(s.waiting, q)
	return nil
}

// Abort removes a request from either queue.
func (s *SimpleScheduler) Abort(id string, _ scheduler.FinishReason) bool {
	q, ok := s.byID[id]
	if !ok {
		return false
	}
	s.remove(q)
	return true
}

func (s *SimpleScheduler) remove(q *simpleReq) {
	delete(s.byID, q.r.ID)
	s.waiting = slices.DeleteFunc(s.waiting, func(x *simpleReq) bool { return x == q })
	s.running = slices.DeleteFunc(s.running, func(x *simpleReq) bool { return x == q })
	s.finished = append(s.finished, q.r.ID)
}

// Schedule builds the next step.
func (s *SimpleScheduler) Schedule() *scheduler.Output {
	s.step++
	out := &scheduler.Output{Step: s.step, NumScheduledTokens: map[string]int{}, FinishedRequestIDs: s.finished}
	s.finished = nil
	for len(s.waiting) > 0 && (s.MaxSeqs <= 0 || len(s.running) < s.MaxSeqs) {
		s.running = append(s.running, s.waiting[0])
		s.waiting = s.waiting[1:]
	}
	for _, q := range s.running {
		n := len(q.r.PromptTokenIDs) + len(q.outputs) - q.computed
		if !q.started {
			q.started = true
			p := q.r.Params
			out.NewRequests = append(out.NewRequests, scheduler.NewRequest{ID: q.r.ID, PromptTokenIDs: q.r.PromptTokenIDs, Params: &p})
		} else {
			out.CachedRequests = append(out.CachedRequests, scheduler.CachedRequest{ID: q.r.ID, NumComputedTokens: q.computed})
		}
		out.NumScheduledTokens[q.r.ID] = n
		out.TotalNumScheduledTokens += n
		q.computed += n
	}
	return out
}

// Update applies a runner output (nil: the step failed and produced
// nothing; the engine aborts its requests).
func (s *SimpleScheduler) Update(out *scheduler.Output, ro *scheduler.RunnerOutput) ([]scheduler.RequestOutput, scheduler.Stats) {
	if ro == nil {
		return nil, s.Stats()
	}
	var outs []scheduler.RequestOutput
	for i, id := range ro.ReqIDs {
		q, ok := s.byID[id]
		if !ok {
			continue
		}
		o := scheduler.RequestOutput{ID: id, Step: out.Step}
		for j, tok := range ro.SampledTokenIDs[i] {
			q.outputs = append(q.outputs, tok)
			o.NewTokenIDs = append(o.NewTokenIDs, tok)
			if i < len(ro.Logprobs) && j < len(ro.Logprobs[i]) {
				o.Logprobs = append(o.Logprobs, ro.Logprobs[i][j])
			}
			if o.FinishReason = s.stopReason(q, tok); o.FinishReason != scheduler.FinishNone {
				break
			}
		}
		if o.FinishReason != scheduler.FinishNone {
			s.remove(q)
		}
		outs = append(outs, o)
	}
	return outs, s.Stats()
}

func (s *SimpleScheduler) stopReason(q *simpleReq, tok int32) scheduler.FinishReason {
	p := q.r.Params
	n := len(q.outputs)
	if n >= p.MinTokens {
		if !p.IgnoreEOS && slices.Contains(q.r.EOSTokenIDs, tok) {
			return scheduler.FinishStop
		}
		if slices.Contains(p.StopTokenIDs, tok) {
			return scheduler.FinishStop
		}
	}
	if n >= p.MaxTokens {
		return scheduler.FinishLength
	}
	return scheduler.FinishNone
}

// Stats reports queue sizes (no KV blocks).
func (s *SimpleScheduler) Stats() scheduler.Stats {
	return scheduler.Stats{Step: s.step, NumRunning: len(s.running), NumWaiting: len(s.waiting)}
}

// HasUnfinished reports whether any request is queued or running, or
// finished ids still have to reach the executor.
func (s *SimpleScheduler) HasUnfinished() bool {
	return len(s.waiting)+len(s.running)+len(s.finished) > 0
}
