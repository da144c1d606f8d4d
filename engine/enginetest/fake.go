// Package enginetest provides test doubles for the engine: FakeExecutor, a
// model that takes no time and emits deterministic tokens, for tests and for
// benchmarks of everything around the model (HTTP, SSE, the engine loop).
package enginetest

import (
	"fmt"
	"sync"

	"github.com/vserve/vserve/scheduler"
)

// TokenFunc picks the next token of a request from its prompt and the
// outputs so far.
type TokenFunc func(id string, prompt, outputs []int32) int32

// FakeExecutor mimics a model runner's bookkeeping (prompt, computed tokens,
// chunked prefill, preemption, finished requests) without a model: a request
// samples a token in a step whose scheduled tokens reach the end of its
// known tokens, and the token is Next(id, prompt, outputs).
type FakeExecutor struct {
	// Next picks tokens; the default cycles 100, 101, ... 125.
	Next TokenFunc
	// Fail, when set, is called each step; a non-nil error fails the step.
	Fail func(step uint64) error

	mu   sync.Mutex
	reqs map[string]*fakeReq
	// Steps counts executed steps.
	Steps int
}

type fakeReq struct {
	prompt   []int32
	outputs  []int32
	params   scheduler.SamplingParams
	computed int
}

// DefaultNext cycles the tokens 100..125 by output position.
func DefaultNext(_ string, _, outputs []int32) int32 { return 100 + int32(len(outputs)%26) }

// NumLive returns the requests the executor holds state for.
func (f *FakeExecutor) NumLive() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// Execute implements engine.Executor.
func (f *FakeExecutor) Execute(out *scheduler.Output) (*scheduler.RunnerOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Steps++
	if f.reqs == nil {
		f.reqs = map[string]*fakeReq{}
	}
	if f.Fail != nil {
		if err := f.Fail(out.Step); err != nil {
			return nil, err
		}
	}
	for _, id := range out.FinishedRequestIDs {
		delete(f.reqs, id)
	}
	// Preempted requests keep their state: they come back as cached
	// requests with Resumed set.
	ro := &scheduler.RunnerOutput{Step: out.Step}
	for i := range out.NewRequests {
		nr := &out.NewRequests[i]
		r := &fakeReq{prompt: nr.PromptTokenIDs, computed: nr.NumComputedTokens}
		if nr.Params != nil {
			r.params = *nr.Params
		}
		if old, ok := f.reqs[nr.ID]; ok {
			r.outputs = old.outputs
		}
		f.reqs[nr.ID] = r
		f.advance(nr.ID, r, out.NumScheduledTokens[nr.ID], ro)
	}
	for i := range out.CachedRequests {
		cr := &out.CachedRequests[i]
		r, ok := f.reqs[cr.ID]
		if !ok {
			return nil, fmt.Errorf("fake executor: step %d: unknown cached request %q", out.Step, cr.ID)
		}
		if cr.Resumed {
			r.outputs = append([]int32(nil), cr.NewTokenIDs...)
		}
		r.computed = cr.NumComputedTokens
		f.advance(cr.ID, r, out.NumScheduledTokens[cr.ID], ro)
	}
	return ro, nil
}

func (f *FakeExecutor) advance(id string, r *fakeReq, scheduled int, ro *scheduler.RunnerOutput) {
	promptLogprobs(id, r, scheduled, ro)
	r.computed += scheduled
	if r.computed < len(r.prompt)+len(r.outputs) {
		return // a prefill chunk that does not reach the end
	}
	next := f.Next
	if next == nil {
		next = DefaultNext
	}
	tok := next(id, r.prompt, r.outputs)
	r.outputs = append(r.outputs, tok)
	ro.ReqIDs = append(ro.ReqIDs, id)
	ro.SampledTokenIDs = append(ro.SampledTokenIDs, []int32{tok})
	var lps []scheduler.TokenLogprobs
	if r.params.Logprobs >= 0 && r.params.MaxTokens > 0 {
		lp := scheduler.TokenLogprobs{TokenID: tok, Logprob: -0.25, Rank: 1}
		for k := 0; k < r.params.Logprobs; k++ {
			lp.Top = append(lp.Top, scheduler.TopLogprob{TokenID: tok + int32(k), Logprob: -0.25 - float32(k)})
		}
		lps = []scheduler.TokenLogprobs{lp}
	}
	ro.Logprobs = append(ro.Logprobs, lps)
}

// FakePromptLogprob is the logprob FakeExecutor reports for every prompt
// token; the top k alternatives are the prompt token itself and the ids
// after it, with logprobs FakePromptLogprob - j.
const FakePromptLogprob = -0.5

// promptLogprobs reports, as a runner does, the prompt logprobs of the
// positions computed this step for a request that asked for them and has
// no output yet: prompt token p+1 for each computed position p.
func promptLogprobs(id string, r *fakeReq, scheduled int, ro *scheduler.RunnerOutput) {
	if r.params.PromptLogprobs < 0 || len(r.outputs) > 0 {
		return
	}
	hi := min(r.computed+scheduled, len(r.prompt)-1)
	if r.computed >= hi {
		return
	}
	c := scheduler.PromptLogprobsChunk{ReqID: id, Start: r.computed + 1}
	for p := r.computed; p < hi; p++ {
		tok := r.prompt[p+1]
		lp := scheduler.TokenLogprobs{TokenID: tok, Logprob: FakePromptLogprob, Rank: 1}
		for j := 0; j < r.params.PromptLogprobs; j++ {
			lp.Top = append(lp.Top, scheduler.TopLogprob{TokenID: tok + int32(j), Logprob: FakePromptLogprob - float32(j)})
		}
		c.Logprobs = append(c.Logprobs, lp)
	}
	ro.PromptLogprobs = append(ro.PromptLogprobs, c)
}
