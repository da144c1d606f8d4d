package scheduler

import (
	"fmt"
	"sort"
	"time"

	"github.com/vserve/vserve/kvcache"
)

// Scheduler is the continuous-batching scheduler. It is not safe for
// concurrent use: one goroutine (the engine loop) owns it.
type Scheduler struct {
	cfg      Config
	maxSkips int // 0: no skip-ahead admission
	kv       *kvcache.Manager
	obs      Observer

	step     uint64
	arrivals uint64
	requests map[string]*request // live (waiting or running) requests by id
	waiting  []*request          // admission order (see enqueueWaiting)
	passed   []*request          // scratch: waiting requests passed in this step
	running  []*request          // scheduling order

	finishedPending []string // ended since the last Schedule

	bufs [2]outBuf // Output of step n lives in bufs[n&1]
	outs []RequestOutput

	numPreemptions uint64
	numResumes     uint64

	sv stepView
}

// kind of a scheduled entry.
type entryKind uint8

const (
	kindRunning entryKind = iota // already known by the runner
	kindNew                      // first schedule ever
	kindResumed                  // first schedule after a preemption
)

type schedEntry struct {
	r            *request
	n            int // tokens scheduled
	blocksBefore int // blocks held before this step (kindRunning)
	computed     int // computed tokens before this step
	kind         entryKind
}

// outBuf is one reusable Output with its backing storage.
type outBuf struct {
	out   Output
	sched []schedEntry
	arena []int32 // backing store for the block id slices of out
	// committed are the blocks this step entered into the prefix cache,
	// which a failed step takes out again (Update with a nil RunnerOutput).
	committed []kvcache.CachedBlock
	pending   bool        // built and not yet passed to Update
	batch     BatchCounts // of out, for StepView.Batch
}

// New validates cfg, applies defaults and builds the scheduler and its KV
// block manager. Defaults: BlockSize 16, MaxNumBatchedTokens 2048,
// MaxNumSeqs min(256, MaxNumBatchedTokens), MaxSkips 16 (a negative MaxSkips
// turns skip-ahead admission off). MaxModelLen and NumBlocks are required,
// and the pool must hold one request of MaxModelLen tokens.
func New(cfg Config) (*Scheduler, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	kv, err := kvcache.NewManager(c.kvConfig())
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	s := &Scheduler{
		cfg:      c,
		maxSkips: max(c.MaxSkips, 0),
		kv:       kv,
		requests: make(map[string]*request),
	}
	// Size the per-step buffers for a full batch up front, so that steady
	// steps never grow them.
	for i := range s.bufs {
		b := &s.bufs[i]
		b.out.NumScheduledTokens = make(map[string]int, c.MaxNumSeqs)
		b.out.CachedRequests = make([]CachedRequest, 0, c.MaxNumSeqs)
		b.sched = make([]schedEntry, 0, c.MaxNumSeqs)
	}
	s.running = make([]*request, 0, c.MaxNumSeqs)
	s.outs = make([]RequestOutput, 0, c.MaxNumSeqs)
	s.sv.s = s
	return s, nil
}

// SetObserver installs the observer of scheduling events (nil: none).
func (s *Scheduler) SetObserver(o Observer) { s.obs = o }

// Config returns the configuration with defaults applied.
func (s *Scheduler) Config() Config { return s.cfg }

// Step returns the step counter: the Step of the latest Schedule output
// (0 before the first).
func (s *Scheduler) Step() uint64 { return s.step }

// NumRunning returns the number of running requests.
func (s *Scheduler) NumRunning() int { return len(s.running) }

// NumWaiting returns the number of waiting (including preempted) requests.
func (s *Scheduler) NumWaiting() int { return len(s.waiting) }

// HasUnfinished reports whether any request is waiting or running.
func (s *Scheduler) HasUnfinished() bool { return len(s.requests) > 0 }

// Request returns a read-only view of a live request.
func (s *Scheduler) Request(id string) (RequestView, bool) {
	r, ok := s.requests[id]
	if !ok {
		return nil, false
	}
	return r, true
}

// KV returns the block manager, for read-only inspection (metrics, tests).
func (s *Scheduler) KV() *kvcache.Manager { return s.kv }

// ResetPrefixCache drops every prefix-cache entry; it works only when no
// block is held by a live request and reports whether it did. The step
// counter is not affected.
func (s *Scheduler) ResetPrefixCache() bool { return s.kv.Reset() }

// Stats returns the current statistics.
func (s *Scheduler) Stats() Stats {
	q, h := s.kv.PrefixCacheStats()
	return Stats{
		Step:               s.step,
		NumRunning:         len(s.running),
		NumWaiting:         len(s.waiting),
		KVUsage:            s.kv.Usage(),
		KVBlocksTotal:      s.kv.NumUsable(),
		KVBlocksFree:       s.kv.NumFree(),
		KVBlocksCachedFree: s.kv.NumCachedFree(),
		PrefixCacheQueries: q,
		PrefixCacheHits:    h,
		NumPreemptions:     s.numPreemptions,
		NumResumes:         s.numResumes,
	}
}

// AddRequest queues a request. It rejects a nil request, an empty id or
// prompt, negative token ids, max_tokens <= 0, min_tokens outside
// [0, max_tokens], prompt + max_tokens over MaxModelLen (ErrContextLength)
// and an id that is still live (ErrDuplicateID). The request's slices are
// copied (LogitBias is shared: the caller must not modify it afterwards).
func (s *Scheduler) AddRequest(req *Request) error {
	if err := s.cfg.validateRequest(req); err != nil {
		return err
	}
	if _, dup := s.requests[req.ID]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicateID, req.ID)
	}
	n := len(req.PromptTokenIDs)
	reserve := reservedTokens(n, req.Params.MaxTokens)
	r := &request{
		id:        req.ID,
		tokens:    make([]int32, n, reserve),
		numPrompt: n,
		params:    req.Params,
		eos:       append([]int32(nil), req.EOSTokenIDs...),
		priority:  req.Priority,
		arrival:   s.arrivals,

		observerState: req.ObserverState,
	}
	s.arrivals++
	copy(r.tokens, req.PromptTokenIDs)
	r.params.StopTokenIDs = append([]int32(nil), req.Params.StopTokenIDs...)
	r.seq.Init(req.CacheSalt, ceilDiv(reserve, s.cfg.BlockSize))
	s.requests[r.id] = r
	s.enqueueWaiting(r, false)
	if s.obs != nil {
		s.obs.Queued(r, s.step)
	}
	return nil
}

// Abort ends a waiting or running request with the given reason (FinishAbort,
// or FinishStop for a stop string matched outside the scheduler), frees its
// blocks at once and lists it in the next Output's FinishedRequestIDs. It
// returns false when the id is unknown or already finished. Update returns
// no output for aborted requests: the caller that aborts reports the end.
func (s *Scheduler) Abort(id string, reason FinishReason) bool {
	r, ok := s.requests[id]
	if !ok {
		return false
	}
	if reason == FinishNone {
		reason = FinishAbort
	}
	switch r.state {
	case stateWaiting:
		s.removeWaiting(r)
	case stateRunning:
		s.removeRunning(r)
	}
	s.finish(r, reason, s.step)
	return true
}

// finish ends r: frees its blocks, forgets its id and tells the runner (via
// the next Output). The caller removes it from its queue.
func (s *Scheduler) finish(r *request, reason FinishReason, step uint64) {
	r.state = stateFinished
	r.finish = reason
	if s.obs != nil {
		s.obs.Finished(r, step, reason) // the view still shows the request's blocks
	}
	s.kv.Free(&r.seq)
	delete(s.requests, r.id)
	s.finishedPending = append(s.finishedPending, r.id)
}

// enqueueWaiting inserts r into the waiting queue. FCFS: new requests go to
// the back, preempted ones to the front. Priority: by (priority, arrival).
func (s *Scheduler) enqueueWaiting(r *request, preempted bool) {
	r.state = stateWaiting
	var at int
	switch {
	case s.cfg.Policy == PolicyPriority:
		at = sort.Search(len(s.waiting), func(i int) bool { return r.before(s.waiting[i]) })
	case preempted:
		at = 0
	default:
		at = len(s.waiting)
	}
	s.waiting = append(s.waiting, nil)
	copy(s.waiting[at+1:], s.waiting[at:])
	s.waiting[at] = r
}

func (s *Scheduler) removeWaiting(r *request) {
	for i, w := range s.waiting {
		if w == r {
			s.removeWaitingAt(i)
			return
		}
	}
}

func (s *Scheduler) removeWaitingAt(i int) {
	copy(s.waiting[i:], s.waiting[i+1:])
	s.waiting[len(s.waiting)-1] = nil
	s.waiting = s.waiting[:len(s.waiting)-1]
}

func (s *Scheduler) removeRunning(r *request) {
	for i, w := range s.running {
		if w == r {
			s.removeRunningAt(i)
			return
		}
	}
}

func (s *Scheduler) removeRunningAt(i int) {
	copy(s.running[i:], s.running[i+1:])
	s.running[len(s.running)-1] = nil
	s.running = s.running[:len(s.running)-1]
}

// stepView is the StepView handed to Observer.StepBuilt.
type stepView struct {
	s     *Scheduler
	out   *Output
	batch BatchCounts
	start time.Time
}

func (v *stepView) NumRunning() int               { return len(v.s.running) }
func (v *stepView) NumWaiting() int               { return len(v.s.waiting) }
func (v *stepView) KVUsage() float64              { return v.s.kv.Usage() }
func (v *stepView) KVBlocksTotal() int            { return v.s.kv.NumUsable() }
func (v *stepView) KVBlocksFree() int             { return v.s.kv.NumFree() }
func (v *stepView) NumFinishedSincePrevStep() int { return len(v.out.FinishedRequestIDs) }
func (v *stepView) StartTime() time.Time          { return v.start }
func (v *stepView) Batch() BatchCounts            { return v.batch }
func (v *stepView) Running(fn func(r RequestView, scheduledTokens, computedBefore int)) {
	for _, r := range v.s.running {
		n := 0
		if r.schedStep == v.s.step {
			n = r.schedTokens
		}
		fn(r, n, r.numComputed)
	}
}

// preallocatedOutputTokens bounds the output room reserved up front for a
// request. A request's max_tokens defaults to max_model_len minus its
// prompt, so reserving all of it would make every queued request cost
// O(max_model_len) memory (hundreds of KiB at long contexts) before it has
// produced anything; past this bound the token list and block table grow
// by doubling, which is amortised and rare.
const preallocatedOutputTokens = 4096

// reservedTokens is the token capacity reserved for a request with the
// given prompt length and max_tokens.
func reservedTokens(prompt, maxTokens int) int {
	return prompt + min(maxTokens, preallocatedOutputTokens)
}
