package scheduler

import (
	"fmt"
	"sort"
	"testing"

	"github.com/vserve/vserve/kvcache"
)

// fakeRunner executes Outputs the way the runner contract in doc.go says a
// runner must, and checks the contract while doing so: every computed
// position lies inside the request's block table, and every position a
// request attends to holds that request's token in the KV "cache" (so wrong
// prefix hits, shared blocks written by someone else, or stale tables show
// up as errors).
type fakeRunner struct {
	bs     int
	reqs   map[string]*runReq
	kv     map[int32][]kvSlot
	sample func(id string, tokens []int32) int32
	err    error // first contract violation
	// byID answers in request-id order instead of schedule order (Update
	// must accept any order).
	byID bool
}

type runReq struct {
	tokens []int32
	blocks []int32
}

// kvSlot is what a position's K/V depends on: its token, its position and
// every token before it (prefix, a hash of tokens[:pos+1]).
type kvSlot struct {
	tok    int32
	pos    int
	prefix uint64
	set    bool
}

// prefixHashes returns the FNV-1a hash of toks[:i+1] for each i < n.
func prefixHashes(toks []int32, n int) []uint64 {
	out := make([]uint64, n)
	h := uint64(14695981039346656037)
	for i := 0; i < n; i++ {
		h = (h ^ uint64(uint32(toks[i]))) * 1099511628211
		out[i] = h
	}
	return out
}

func newFakeRunner(bs int) *fakeRunner {
	return &fakeRunner{
		bs:   bs,
		reqs: make(map[string]*runReq),
		kv:   make(map[int32][]kvSlot),
		sample: func(id string, tokens []int32) int32 {
			return 1000 + int32(len(tokens)) // never EOS unless a test says so
		},
		byID: true,
	}
}

func (f *fakeRunner) fail(format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf(format, args...)
	}
}

type work struct {
	id    string
	start int
	n     int
}

func (f *fakeRunner) execute(out *Output) *RunnerOutput {
	ws := f.apply(out)
	if ws == nil && f.err != nil {
		return &RunnerOutput{Step: out.Step}
	}
	return f.compute(out, ws)
}

// executeFailed is a step that fails on the device after the runner took
// in the Output's table diffs: no K/V is written and nothing is sampled.
func (f *fakeRunner) executeFailed(out *Output) {
	f.apply(out)
}

// apply takes in the Output's diffs (finished, new and cached requests)
// and returns the work of the step.
func (f *fakeRunner) apply(out *Output) []work {
	for _, id := range out.FinishedRequestIDs {
		delete(f.reqs, id)
	}
	var ws []work
	for _, nr := range out.NewRequests {
		if _, ok := f.reqs[nr.ID]; ok {
			f.fail("step %d: new request %s already known", out.Step, nr.ID)
		}
		if nr.NumComputedTokens >= len(nr.PromptTokenIDs) {
			f.fail("step %d: %s: %d computed of a %d-token prompt", out.Step, nr.ID, nr.NumComputedTokens, len(nr.PromptTokenIDs))
		}
		f.reqs[nr.ID] = &runReq{
			tokens: append([]int32(nil), nr.PromptTokenIDs...),
			blocks: append([]int32(nil), nr.BlockIDs...),
		}
		ws = append(ws, work{nr.ID, nr.NumComputedTokens, out.NumScheduledTokens[nr.ID]})
	}
	for _, cr := range out.CachedRequests {
		r, ok := f.reqs[cr.ID]
		if !ok {
			f.fail("step %d: cached request %s unknown", out.Step, cr.ID)
			continue
		}
		if cr.Resumed {
			r.blocks = append(r.blocks[:0], cr.NewBlockIDs...)
			nOut := len(cr.NewTokenIDs)
			nPrompt := len(r.tokens) - nOut
			if nPrompt <= 0 {
				f.fail("step %d: resumed %s has %d outputs but the runner holds %d tokens", out.Step, cr.ID, nOut, len(r.tokens))
				continue
			}
			for i, t := range cr.NewTokenIDs {
				if r.tokens[nPrompt+i] != t {
					f.fail("step %d: resumed %s output %d is %d, runner sampled %d", out.Step, cr.ID, i, t, r.tokens[nPrompt+i])
				}
			}
		} else {
			r.blocks = append(r.blocks, cr.NewBlockIDs...)
		}
		ws = append(ws, work{cr.ID, cr.NumComputedTokens, out.NumScheduledTokens[cr.ID]})
	}
	if len(ws) != len(out.NumScheduledTokens) {
		f.fail("step %d: %d scheduled requests but %d entries", out.Step, len(ws), len(out.NumScheduledTokens))
	}
	total := 0
	for _, w := range ws {
		total += w.n
	}
	if total != out.TotalNumScheduledTokens {
		f.fail("step %d: total %d, sum %d", out.Step, out.TotalNumScheduledTokens, total)
	}
	return ws
}

// compute writes all K/V of the step first, then checks what each request
// reads, and samples.
func (f *fakeRunner) compute(out *Output, ws []work) *RunnerOutput {
	for _, w := range ws {
		r := f.reqs[w.id]
		if w.n <= 0 || w.start+w.n > len(r.tokens) {
			f.fail("step %d: %s scheduled positions %d..%d of %d tokens", out.Step, w.id, w.start, w.start+w.n-1, len(r.tokens))
			continue
		}
		if len(r.blocks)*f.bs < w.start+w.n {
			f.fail("step %d: %s: %d blocks cannot hold %d tokens", out.Step, w.id, len(r.blocks), w.start+w.n)
			continue
		}
		prefix := prefixHashes(r.tokens, w.start+w.n)
		for p := w.start; p < w.start+w.n; p++ {
			f.slot(r.blocks[p/f.bs], p%f.bs, kvSlot{r.tokens[p], p, prefix[p], true})
		}
	}
	ro := &RunnerOutput{Step: out.Step}
	if f.byID {
		sort.Slice(ws, func(i, j int) bool { return ws[i].id < ws[j].id })
	} else {
		// Running requests first, then admitted ones: the schedule order
		// except that resumed requests come before new ones.
		nNew := len(out.NewRequests)
		ws = append(append([]work(nil), ws[nNew:]...), ws[:nNew]...)
	}
	for _, w := range ws {
		r := f.reqs[w.id]
		if w.start+w.n > len(r.tokens) || len(r.blocks)*f.bs < w.start+w.n {
			continue
		}
		prefix := prefixHashes(r.tokens, w.start+w.n)
		for p := 0; p < w.start+w.n; p++ {
			b := r.blocks[p/f.bs]
			if b == 0 {
				f.fail("step %d: %s uses the null block at position %d", out.Step, w.id, p)
				break
			}
			var got kvSlot // unset unless some step wrote the block
			if slots, ok := f.kv[b]; ok {
				got = slots[p%f.bs]
			}
			if !got.set || got.tok != r.tokens[p] || got.pos != p || got.prefix != prefix[p] {
				f.fail("step %d: %s position %d reads %+v from block %d, want token %d", out.Step, w.id, p, got, b, r.tokens[p])
				break
			}
		}
		if w.start+w.n == len(r.tokens) {
			t := f.sample(w.id, r.tokens)
			r.tokens = append(r.tokens, t)
			ro.ReqIDs = append(ro.ReqIDs, w.id)
			ro.SampledTokenIDs = append(ro.SampledTokenIDs, []int32{t})
		}
	}
	return ro
}

func (f *fakeRunner) slot(b int32, i int, v kvSlot) {
	s, ok := f.kv[b]
	if !ok {
		s = make([]kvSlot, f.bs)
		f.kv[b] = s
	}
	s[i] = v
}

// check fails the test on the first contract violation seen.
func (f *fakeRunner) check(t testing.TB) {
	t.Helper()
	if f.err != nil {
		t.Fatal(f.err)
	}
}

// checkInvariants verifies the scheduler's and the block pool's invariants.
func checkInvariants(s *Scheduler) error {
	var live []*request
	for _, r := range s.requests {
		live = append(live, r)
	}
	seqs := make([]*kvcache.Seq, 0, len(live))
	for _, r := range live {
		seqs = append(seqs, &r.seq)
	}
	if err := s.kv.Check(seqs); err != nil {
		return err
	}
	if len(s.requests) != len(s.running)+len(s.waiting) {
		return fmt.Errorf("%d live requests but %d running + %d waiting", len(s.requests), len(s.running), len(s.waiting))
	}
	if len(s.running) > s.cfg.MaxNumSeqs {
		return fmt.Errorf("%d running > MaxNumSeqs %d", len(s.running), s.cfg.MaxNumSeqs)
	}
	for _, r := range s.running {
		if r.state != stateRunning || s.requests[r.id] != r {
			return fmt.Errorf("running %s has state %d", r.id, r.state)
		}
		if r.seq.NumBlocks()*s.cfg.BlockSize < r.numComputed {
			return fmt.Errorf("running %s: %d blocks for %d computed tokens", r.id, r.seq.NumBlocks(), r.numComputed)
		}
		if r.numComputed > len(r.tokens) {
			return fmt.Errorf("running %s: %d computed of %d tokens", r.id, r.numComputed, len(r.tokens))
		}
	}
	for i, r := range s.waiting {
		if r.state != stateWaiting || s.requests[r.id] != r {
			return fmt.Errorf("waiting %s has state %d", r.id, r.state)
		}
		if r.seq.NumBlocks() != 0 || r.numComputed != 0 {
			return fmt.Errorf("waiting %s holds %d blocks, %d computed", r.id, r.seq.NumBlocks(), r.numComputed)
		}
		if s.cfg.Policy == PolicyPriority && i > 0 && r.before(s.waiting[i-1]) {
			return fmt.Errorf("waiting queue out of priority order at %d", i)
		}
	}
	return nil
}
