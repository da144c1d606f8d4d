package scheduler

import (
	"fmt"
	"slices"
	"testing"
)

// byteStream hands out fuzz input bytes; zeros once exhausted.
type byteStream struct {
	b []byte
	i int
}

func (s *byteStream) next() int {
	if s.i >= len(s.b) {
		return 0
	}
	s.i++
	return int(s.b[s.i-1])
}

func (s *byteStream) done() bool { return s.i >= len(s.b) }

// scenarioConfig derives a small configuration from the input.
func scenarioConfig(in *byteStream) Config {
	bs := []int{1, 2, 4}[in.next()%3]
	maxLen := 8 + in.next()%33
	budget := 4 + in.next()%29
	cfg := Config{
		MaxModelLen:               maxLen,
		MaxNumBatchedTokens:       budget,
		MaxNumSeqs:                1 + in.next()%min(8, budget),
		LongPrefillTokenThreshold: in.next() % 9,
		Policy:                    Policy(in.next() % 2),
		BlockSize:                 bs,
		EnablePrefixCaching:       in.next()%4 != 0,
		HashAlgo:                  HashAlgo(in.next() % 2),
		MaxSkips:                  in.next()%5 - 1,
	}
	cfg.NumBlocks = 1 + ceilDiv(maxLen, bs) + in.next()%12
	return cfg
}

// runScenario drives random add / schedule+execute+update / failed step /
// abort sequences
// and checks the invariants after every operation, then lets everything
// finish and checks that nothing leaked.
func runScenario(t *testing.T, data []byte) {
	in := &byteStream{b: data}
	cfg := scenarioConfig(in)
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("config %+v: %v", cfg, err)
	}
	s.SetObserver(batchChecker{t: t})
	f := newFakeRunner(cfg.BlockSize)
	f.byID = in.next()%2 == 0
	f.sample = func(_ string, toks []int32) int32 {
		if v := in.next(); v != 0 {
			return int32(v % 6) // small vocabulary: EOS (2) and stop ids happen
		}
		return 1000 + int32(len(toks))
	}
	var ids []string
	lastPreemptOutputs := map[string]int{}
	var lastStep uint64
	nextID := 0
	// failStep is a step whose execution fails after the runner took in
	// its diffs, or before; Update with no runner output ends its requests.
	failStep := func() {
		out := s.Schedule()
		lastStep = out.Step
		if in.next()%2 == 0 {
			f.executeFailed(out)
		}
		s.Update(out, nil)
		for id := range out.NumScheduledTokens {
			if _, ok := s.requests[id]; ok {
				t.Fatalf("step %d: %s still live after its step failed", out.Step, id)
			}
		}
	}
	doStep := func() {
		out := s.Schedule()
		if out.Step != lastStep+1 {
			t.Fatalf("step %d after %d", out.Step, lastStep)
		}
		lastStep = out.Step
		for _, id := range out.PreemptedRequestIDs {
			r := s.requests[id]
			if prev, ok := lastPreemptOutputs[id]; ok && r.numOutputs() <= prev {
				t.Fatalf("step %d: %s preempted again without progress (%d outputs)", out.Step, id, prev)
			}
			lastPreemptOutputs[id] = r.numOutputs()
		}
		ro := f.execute(out)
		if f.err != nil {
			t.Fatal(f.err)
		}
		deltas, st := s.Update(out, ro)
		for _, d := range deltas {
			if d.Step != out.Step {
				t.Fatalf("delta of step %d in step %d", d.Step, out.Step)
			}
		}
		if st.NumRunning+st.NumWaiting != len(s.requests) || st.KVBlocksFree != s.kv.NumFree() {
			t.Fatalf("stats %+v disagree with state", st)
		}
		// The runner, fed only the Output diffs, holds the same block
		// tables and tokens as the scheduler.
		for _, r := range s.running {
			rr, ok := f.reqs[r.id]
			if !ok {
				t.Fatalf("step %d: runner does not know running %s", out.Step, r.id)
			}
			if !slices.Equal(rr.blocks, r.seq.Blocks()) || !slices.Equal(rr.tokens, r.tokens) {
				t.Fatalf("step %d: %s: runner has blocks %v tokens %v, scheduler %v %v",
					out.Step, r.id, rr.blocks, rr.tokens, r.seq.Blocks(), r.tokens)
			}
		}
	}
	for ops := 0; !in.done() && ops < 400; ops++ {
		switch op := in.next() % 9; {
		case op <= 2:
			n := 1 + in.next()%cfg.MaxModelLen
			if n >= cfg.MaxModelLen {
				n = cfg.MaxModelLen - 1
			}
			if n < 1 {
				n = 1
			}
			prompt := make([]int32, n)
			vocab := 1 + in.next()%4 // tiny vocabularies share prefixes
			for i := range prompt {
				prompt[i] = int32(10 + (i*7+ops)%vocab)
				if in.next()%8 == 0 {
					prompt[i] = int32(20 + i)
				}
			}
			maxTok := 1 + in.next()%(cfg.MaxModelLen-n)
			id := fmt.Sprintf("r%d", nextID)
			nextID++
			p := DefaultSamplingParams(maxTok)
			p.MinTokens = in.next() % (maxTok + 1)
			p.IgnoreEOS = in.next()%4 == 0
			if in.next()%3 == 0 {
				p.StopTokenIDs = []int32{int32(in.next() % 6)}
			}
			err := s.AddRequest(&Request{ID: id, PromptTokenIDs: prompt, Params: p, EOSTokenIDs: []int32{2},
				Priority: in.next() % 3, CacheSalt: []string{"", "x"}[in.next()%2]})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		case op <= 6:
			doStep()
		case op == 7:
			failStep()
		default:
			if len(ids) > 0 {
				s.Abort(ids[in.next()%len(ids)], FinishAbort)
			}
		}
		if err := checkInvariants(s); err != nil {
			t.Fatalf("after op %d (step %d): %v", ops, s.Step(), err)
		}
	}
	for i := 0; s.HasUnfinished(); i++ {
		if i > 5000 {
			t.Fatalf("requests never finish: %d running, %d waiting", s.NumRunning(), s.NumWaiting())
		}
		doStep()
		if err := checkInvariants(s); err != nil {
			t.Fatalf("draining (step %d): %v", s.Step(), err)
		}
	}
	if s.kv.NumFree() != s.kv.NumUsable() {
		t.Fatalf("leaked %d blocks", s.kv.NumUsable()-s.kv.NumFree())
	}
	if err := s.kv.Check(nil); err != nil {
		t.Fatal(err)
	}
}

// batchChecker checks, at every step, the view's batch counts against a
// visit of the running requests.
type batchChecker struct {
	nopObserver
	t *testing.T
}

func (c batchChecker) StepBuilt(out *Output, v StepView) {
	var visited BatchCounts
	v.Running(func(q RequestView, sched, _ int) { visited.add(q.NumOutputTokens() > 0, sched) })
	if v.Batch() != visited {
		c.t.Fatalf("step %d: the view's batch counts %+v, the running requests' %+v", out.Step, v.Batch(), visited)
	}
}

func FuzzScheduler(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{2, 20, 12, 3, 0, 0, 1, 0, 2, 4, 0, 30, 1, 9, 3, 0, 0, 1, 0, 1, 3, 3, 3, 3, 7, 0, 3, 3, 3, 3})
	f.Add([]byte{1, 8, 4, 1, 2, 1, 1, 1, 3, 0, 0, 9, 1, 10, 2, 0, 0, 0, 0, 0, 1, 9, 3, 12, 5, 1, 1, 1, 1, 1, 4, 4, 4, 4, 4, 5, 5, 5, 5})
	for seed := 0; seed < 24; seed++ {
		f.Add(pseudoRandomBytes(seed, 300))
	}
	f.Fuzz(runScenario)
}

// pseudoRandomBytes is a deterministic xorshift byte stream for seeds.
func pseudoRandomBytes(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed*2654435761 + 1)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
