package scheduler

import "time"

// Schedule builds the next step-numbered batch. It increments the step
// counter first (the first batch is step 1; empty batches count too), then
// spends the token budget on running requests in order (preempting by
// recompute when blocks run out), then, unless it preempted, admits waiting
// requests while budget and MaxNumSeqs allow.
//
// The returned Output and everything it points to belong to the scheduler:
// they stay valid until the second following Schedule call (two buffers
// alternate, so one step can be executed while the next is built) and must
// not be modified.
func (s *Scheduler) Schedule() *Output {
	s.step++
	var start time.Time
	if s.obs != nil {
		start = time.Now()
	}
	buf := &s.bufs[s.step&1]
	buf.reset(s.step)
	budget := s.cfg.MaxNumBatchedTokens
	if !s.scheduleRunning(buf, &budget) {
		s.scheduleWaiting(buf, &budget)
	}
	s.buildOutput(buf)
	if s.obs != nil {
		s.sv.out, s.sv.batch, s.sv.start = &buf.out, buf.batch, start
		s.obs.StepBuilt(&buf.out, &s.sv)
		s.sv.out = nil
	}
	s.advance(buf)
	return &buf.out
}

func (b *outBuf) reset(step uint64) {
	o := &b.out
	o.Step = step
	o.NewRequests = o.NewRequests[:0]
	o.CachedRequests = o.CachedRequests[:0]
	clear(o.NumScheduledTokens)
	o.TotalNumScheduledTokens = 0
	o.FinishedRequestIDs = o.FinishedRequestIDs[:0]
	o.PreemptedRequestIDs = o.PreemptedRequestIDs[:0]
	b.committed = b.committed[:0]
	b.pending = true
	b.batch = BatchCounts{}
	clear(b.sched) // drop request pointers of two steps ago
	b.sched = b.sched[:0]
	b.arena = b.arena[:0]
}

// numNewTokens is how many of r's tokens after computed fit this step:
// all of them, capped by the long-prefill threshold and the budget.
func (s *Scheduler) numNewTokens(r *request, computed, budget int) int {
	n := len(r.tokens) - computed
	if t := s.cfg.LongPrefillTokenThreshold; t > 0 && n > t {
		n = t
	}
	return min(n, budget)
}

// scheduleRunning schedules running requests in order and reports whether
// it preempted any.
func (s *Scheduler) scheduleRunning(buf *outBuf, budget *int) (preempted bool) {
	for i := 0; i < len(s.running) && *budget > 0; {
		r := s.running[i]
		n := s.numNewTokens(r, r.numComputed, *budget)
		if n <= 0 {
			i++ // waiting for its sampled token
			continue
		}
		blocksBefore := r.seq.NumBlocks()
		ok := false
		for {
			if s.kv.Allocate(&r.seq, r.numComputed, n, 0) {
				ok = true
				break
			}
			v := s.pickVictim()
			if v < 0 {
				break
			}
			victim := s.running[v]
			s.preempt(v, buf, budget)
			preempted = true
			if v < i {
				i--
			}
			if victim == r {
				break
			}
		}
		if !ok {
			break
		}
		s.addEntry(buf, schedEntry{r: r, n: n, blocksBefore: blocksBefore, computed: r.numComputed, kind: kindRunning})
		*budget -= n
		i++
	}
	return preempted
}

// pickVictim returns the index in running of the preemption victim: the
// last running request (FCFS) or the one with the highest priority value,
// latest arrival on ties (priority). Requests resumed after a preemption are
// exempt until they have produced a new token; -1 when all are exempt.
func (s *Scheduler) pickVictim() int {
	best := -1
	for i := len(s.running) - 1; i >= 0; i-- {
		r := s.running[i]
		if r.protected() {
			continue
		}
		if s.cfg.Policy == PolicyFCFS {
			return i
		}
		if best < 0 || s.running[best].before(r) {
			best = i
		}
	}
	return best
}

// preempt moves running[v] back to the waiting queue, freeing its blocks
// (their cache entries stay) and resetting its computed tokens. If it was
// already scheduled in this step, that is undone.
func (s *Scheduler) preempt(v int, buf *outBuf, budget *int) {
	r := s.running[v]
	s.removeRunningAt(v)
	if r.schedStep == s.step {
		for i := range buf.sched {
			if buf.sched[i].r == r {
				*budget += buf.sched[i].n
				copy(buf.sched[i:], buf.sched[i+1:])
				buf.sched[len(buf.sched)-1] = schedEntry{}
				buf.sched = buf.sched[:len(buf.sched)-1]
				break
			}
		}
		r.schedStep, r.schedTokens = 0, 0
	}
	s.kv.Free(&r.seq)
	r.numComputed = 0
	r.numPreemptions++
	r.protectOutputs = r.numOutputs() + 1
	s.numPreemptions++
	s.enqueueWaiting(r, true)
	buf.out.PreemptedRequestIDs = append(buf.out.PreemptedRequestIDs, r.id)
	if s.obs != nil {
		s.obs.Preempted(r, s.step)
	}
}

// scheduleWaiting admits waiting requests in queue order while budget and
// MaxNumSeqs allow. A request whose blocks do not fit may be passed by
// requests behind it at most maxSkips times; after that nothing behind it
// is admitted until it fits. At most maxAdmitProbes requests that do not
// fit are tried per step, and the queue is compacted once, so a long queue
// costs O(admitted + probes) plus one move of its tail per step.
func (s *Scheduler) scheduleWaiting(buf *outBuf, budget *int) {
	passed := s.passed[:0]
	scanned, admitted := 0, 0
	for scanned < len(s.waiting) && *budget > 0 && len(s.running) < s.cfg.MaxNumSeqs {
		r := s.waiting[scanned]
		scanned++
		if s.admit(r, buf, budget) {
			admitted++
			blocked := false
			for _, p := range passed {
				p.skips++
				blocked = blocked || p.skips >= s.maxSkips
			}
			if blocked {
				break
			}
			continue
		}
		if r.skips >= s.maxSkips {
			break
		}
		if passed = append(passed, r); len(passed) >= maxAdmitProbes {
			break
		}
	}
	clear(passed)
	s.passed = passed[:0]
	if admitted > 0 {
		s.dropAdmitted(scanned)
	}
}

// dropAdmitted removes the admitted (now running) requests from the first
// n entries of the waiting queue, keeping the order of the rest.
func (s *Scheduler) dropAdmitted(n int) {
	kept := 0
	for _, r := range s.waiting[:n] {
		if r.state == stateWaiting {
			s.waiting[kept] = r
			kept++
		}
	}
	rest := copy(s.waiting[kept:], s.waiting[n:])
	clear(s.waiting[kept+rest:])
	s.waiting = s.waiting[:kept+rest]
}

// admit tries to move waiting request r into the running set: look up its
// prefix hits, allocate blocks for its first chunk (for a resumed request:
// for all its tokens, so that it cannot need more blocks, and so cannot be
// preempted, before it produces a new token), and schedule the chunk.
func (s *Scheduler) admit(r *request, buf *outBuf, budget *int) bool {
	hit := s.lookupPrefix(r)
	n := s.numNewTokens(r, hit, *budget)
	resumed := r.everScheduled
	reserve := 0
	if resumed {
		reserve = len(r.tokens)
	}
	if !s.kv.Allocate(&r.seq, hit, n, reserve) {
		return false
	}
	// As in vLLM, the full blocks this step will compute enter the prefix
	// cache at once, so that a request admitted after r in this same step
	// (an n > 1 sibling, the same system prompt) hits them instead of
	// computing them again: the runner writes a step's K/V before any
	// attention reads it. Nothing admitted can be preempted in this step.
	buf.committed = s.kv.Commit(&r.seq, r.tokens, hit+n, buf.committed)
	r.numComputed = hit
	kind := kindResumed
	if resumed {
		s.numResumes++
	} else {
		kind = kindNew
		r.everScheduled = true
		r.numCachedTokens = hit
		if !r.wantsPromptLogprobs() {
			s.kv.CountQuery(r.numPrompt, hit)
		}
	}
	r.state = stateRunning
	s.running = append(s.running, r)
	s.addEntry(buf, schedEntry{r: r, n: n, computed: hit, kind: kind})
	*budget -= n
	if s.obs != nil {
		s.obs.Scheduled(r, s.step, resumed)
	}
	return true
}

// lookupPrefix returns r's prefix-cache hit in tokens. A request that still
// needs its prompt logprobs reads nothing from the cache (as in vLLM): the
// cached positions would have no logits. Its blocks still enter the cache.
// The empty lookup clears hits left by an earlier lookup.
func (s *Scheduler) lookupPrefix(r *request) int {
	if r.wantsPromptLogprobs() {
		return s.kv.Lookup(&r.seq, nil)
	}
	return s.kv.Lookup(&r.seq, r.tokens)
}

func (s *Scheduler) addEntry(buf *outBuf, e schedEntry) {
	buf.sched = append(buf.sched, e)
	e.r.schedStep, e.r.schedTokens = s.step, e.n
}

// add counts one scheduled request of n tokens.
func (c *BatchCounts) add(decode bool, n int) {
	if n <= 0 {
		return
	}
	if decode {
		c.DecodeReqs++
		c.DecodeTokens += n
	} else {
		c.PrefillReqs++
		c.PrefillTokens += n
	}
}

// buildOutput fills buf.out from the scheduled entries.
func (s *Scheduler) buildOutput(buf *outBuf) {
	out := &buf.out
	for i := range buf.sched {
		e := &buf.sched[i]
		r := e.r
		out.NumScheduledTokens[r.id] = e.n
		out.TotalNumScheduledTokens += e.n
		buf.batch.add(r.numOutputs() > 0, e.n)
		switch e.kind {
		case kindNew:
			out.NewRequests = append(out.NewRequests, NewRequest{
				ID:                r.id,
				PromptTokenIDs:    r.prompt(),
				BlockIDs:          buf.copyBlocks(r.seq.Blocks()),
				NumComputedTokens: e.computed,
				Params:            &r.params,
			})
		case kindResumed:
			out.CachedRequests = append(out.CachedRequests, CachedRequest{
				ID:                r.id,
				Resumed:           true,
				NewTokenIDs:       r.outputs(),
				NewBlockIDs:       buf.copyBlocks(r.seq.Blocks()),
				NumComputedTokens: e.computed,
			})
		default:
			out.CachedRequests = append(out.CachedRequests, CachedRequest{
				ID:                r.id,
				NewBlockIDs:       buf.copyBlocks(r.seq.Blocks()[e.blocksBefore:]),
				NumComputedTokens: e.computed,
			})
		}
	}
	out.FinishedRequestIDs = append(out.FinishedRequestIDs, s.finishedPending...)
	clear(s.finishedPending)
	s.finishedPending = s.finishedPending[:0]
}

// copyBlocks copies ids into the buffer's arena (the caller's table keeps
// changing) and returns a capacity-limited slice of it.
func (b *outBuf) copyBlocks(ids []int32) []int32 {
	if len(ids) == 0 {
		return nil
	}
	start := len(b.arena)
	b.arena = append(b.arena, ids...)
	return b.arena[start:len(b.arena):len(b.arena)]
}

// advance is the post-schedule bookkeeping: computed tokens advance
// optimistically, the prefill high-water mark follows, and the blocks that
// the step fills are entered into the prefix cache.
func (s *Scheduler) advance(buf *outBuf) {
	for i := range buf.sched {
		e := &buf.sched[i]
		r := e.r
		r.numComputed += e.n
		if hw := min(r.numComputed, r.numPrompt); hw > r.highWater {
			r.highWater = hw
		}
		buf.committed = s.kv.Commit(&r.seq, r.tokens, r.numComputed, buf.committed)
	}
}
