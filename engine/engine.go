package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vserve/vserve/scheduler"
)

// Executor runs one scheduled batch: the model runner in production, a fake
// that takes no time in tests and overhead benchmarks.
type Executor interface {
	Execute(*scheduler.Output) (*scheduler.RunnerOutput, error)
}

// Scheduler is what the engine needs of *scheduler.Scheduler. The engine
// goroutine is its only caller. When executing a step fails, the engine
// passes Update a nil RunnerOutput (*scheduler.Scheduler then ends the
// step's requests itself) and aborts the step's requests, then ends their
// streams with the error.
type Scheduler interface {
	AddRequest(*scheduler.Request) error
	Abort(id string, reason scheduler.FinishReason) bool
	Schedule() *scheduler.Output
	Update(*scheduler.Output, *scheduler.RunnerOutput) ([]scheduler.RequestOutput, scheduler.Stats)
	Stats() scheduler.Stats
	HasUnfinished() bool
}

// observable is implemented by schedulers that report events.
type observable interface {
	SetObserver(scheduler.Observer)
}

// Config configures an Engine. Zero values select the defaults.
type Config struct {
	// MaxQueuedRequests bounds the requests accepted but not yet scheduled
	// (0: unbounded). Past it Add fails with ErrQueueFull.
	MaxQueuedRequests int
	// MaxQueuedTokens bounds the prompt tokens of those requests (0:
	// unbounded). A single request larger than the bound is still accepted
	// when nothing else is queued.
	MaxQueuedTokens int
	// IdleBackoff is how long the loop waits for new intake after a step
	// that scheduled nothing while requests remain (default 1ms).
	IdleBackoff time.Duration
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	Hooks
}

// Errors returned by Add and AddAll.
var (
	ErrQueueFull    = errors.New("engine: waiting queue is full")
	ErrShuttingDown = errors.New("engine: shutting down")
	ErrDuplicateID  = errors.New("engine: duplicate request id")
	ErrInvalid      = errors.New("engine: invalid request")
	// ErrGroupTooLarge: AddAll was given more requests than the queue
	// bound admits at once; retrying cannot help.
	ErrGroupTooLarge = errors.New("engine: more requests than the waiting queue holds")
)

// Request is a generation request for the engine.
type Request struct {
	ID             string // unique among live requests
	PromptTokenIDs []int32
	Params         scheduler.SamplingParams
	EOSTokenIDs    []int32
	Priority       int
	CacheSalt      string
	// Deadline aborts the request (finish reason abort, cause timeout)
	// within one step after it passes; zero means none.
	Deadline time.Time
	// TraceHeaders are passed to the hooks untouched.
	TraceHeaders map[string]string
	// Notify, when set, is signalled (without blocking) whenever the
	// request's stream has something new; several streams may share one
	// channel so that a caller can wait on them together (see TryNext).
	Notify chan struct{}
	// StopCheck, when set, sees every output token of the request in order,
	// on the engine goroutine as the step's outputs are published; end is
	// the finish reason the scheduler gave the request with this token
	// (FinishNone while it goes on; FinishStop: the token is EOS or one of
	// the stop token ids). Returning true ends the request with finish
	// reason stop and cause CauseStopString after that token, before the
	// next step is scheduled: no token past it is generated, delivered or
	// counted, and a stop on the last token also wins over length. (On a
	// token the scheduler stopped at, the cause stays empty.) Stop strings,
	// which need detokenising, are matched this way, as vLLM's output
	// processor matches them. It must be quick and must not block.
	StopCheck func(token int32, end scheduler.FinishReason) bool
}

// Engine owns the scheduler and the executor and runs the loop on one
// goroutine. All methods are safe for concurrent use.
type Engine struct {
	cfg   Config
	sched Scheduler
	exec  Executor
	log   *slog.Logger

	// intake, guarded by mu; the loop swaps the slices out.
	mu       sync.Mutex
	adds     []*entry
	aborts   []abortMsg
	closing  bool // no new requests
	abortAll bool // shutdown grace is over
	wake     chan struct{}

	// admission, guarded by admitMu.
	admitMu       sync.Mutex
	active        map[string]struct{}
	queuedReqs    int
	queuedTokens  int
	lastStats     scheduler.Stats
	stepsExecuted uint64

	done chan struct{}

	// loop-owned state.
	live      map[string]*entry
	deadlines deadlineHeap
}

type abortMsg struct {
	id     string
	reason scheduler.FinishReason
	cause  string
}

// entry is the loop's record of one live request.
type entry struct {
	req        *Request
	stream     *Stream
	queued     bool // still counted by admission
	times      RequestTimes
	numOutput  int
	numCached  int
	preempted  int
	addedToSch bool
	started    bool // OnRequestStart was called
	observed   any  // what OnRequestStart returned (Hooks.OnRequestStart)
}

// New makes an engine and starts its loop. Stop it with Shutdown.
func New(cfg Config, sched Scheduler, exec Executor) *Engine {
	if cfg.IdleBackoff <= 0 {
		cfg.IdleBackoff = time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Observer != nil {
		if o, ok := sched.(observable); ok {
			o.SetObserver(cfg.Observer)
		}
	}
	e := &Engine{
		cfg:    cfg,
		sched:  sched,
		exec:   exec,
		log:    cfg.Logger,
		wake:   make(chan struct{}, 1),
		active: map[string]struct{}{},
		done:   make(chan struct{}),
		live:   map[string]*entry{},
	}
	e.lastStats = sched.Stats()
	go e.run()
	return e
}

// Add submits a request and returns its output stream. It never blocks on
// the engine loop. The caller must Close the stream (Close after the final
// output is a no-op; before it, Close aborts the request).
func (e *Engine) Add(ctx context.Context, r *Request) (*Stream, error) {
	streams, err := e.AddAll(ctx, []*Request{r})
	if err != nil {
		return nil, err
	}
	return streams[0], nil
}

// MaxQueuedRequests is the queue bound of the configuration (0: none): the
// largest group AddAll can admit.
func (e *Engine) MaxQueuedRequests() int { return e.cfg.MaxQueuedRequests }

// AddAll submits requests that belong together, such as the choices of one
// API request, and returns their streams in order: all are admitted or
// none is, so a group that does not fit the queue bounds leaves nothing
// behind (no request is started and aborted). A group larger than
// MaxQueuedRequests can never be admitted: that is ErrGroupTooLarge. For
// MaxQueuedTokens a group counts as one request.
func (e *Engine) AddAll(ctx context.Context, rs []*Request) ([]*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now()
	for _, r := range rs {
		if err := validate(r); err != nil {
			return nil, err
		}
	}
	if err := e.admit(rs); err != nil {
		return nil, err
	}
	entries := make([]*entry, len(rs))
	streams := make([]*Stream, len(rs))
	for i, r := range rs {
		en := &entry{req: r, times: RequestTimes{Arrival: now}, queued: true}
		en.stream = newStream(e, r.ID, r.Notify)
		entries[i], streams[i] = en, en.stream
	}
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		for _, r := range rs {
			e.release(r.ID, true, len(r.PromptTokenIDs))
		}
		return nil, ErrShuttingDown
	}
	e.adds = append(e.adds, entries...)
	e.mu.Unlock()
	e.signal()
	return streams, nil
}

func validate(r *Request) error {
	switch {
	case r == nil:
		return fmt.Errorf("%w: nil request", ErrInvalid)
	case r.ID == "":
		return fmt.Errorf("%w: empty id", ErrInvalid)
	case len(r.PromptTokenIDs) == 0:
		return fmt.Errorf("%w: empty prompt", ErrInvalid)
	case r.Params.MaxTokens <= 0:
		return fmt.Errorf("%w: max_tokens must be positive", ErrInvalid)
	}
	return nil
}

// admit applies the queue bounds to a group of requests and reserves
// their ids, for all of them or for none.
func (e *Engine) admit(rs []*Request) error {
	e.admitMu.Lock()
	defer e.admitMu.Unlock()
	if bound := e.cfg.MaxQueuedRequests; bound > 0 && len(rs) > bound {
		return fmt.Errorf("%w: %d requests, the queue holds %d", ErrGroupTooLarge, len(rs), bound)
	}
	n := 0
	for i, r := range rs {
		if _, dup := e.active[r.ID]; dup {
			for _, o := range rs[:i] {
				delete(e.active, o.ID)
			}
			return fmt.Errorf("%w %q", ErrDuplicateID, r.ID)
		}
		e.active[r.ID] = struct{}{}
		n += len(r.PromptTokenIDs)
	}
	full := e.cfg.MaxQueuedRequests > 0 && e.queuedReqs+len(rs) > e.cfg.MaxQueuedRequests ||
		e.cfg.MaxQueuedTokens > 0 && e.queuedReqs > 0 && e.queuedTokens+n > e.cfg.MaxQueuedTokens
	if full {
		for _, r := range rs {
			delete(e.active, r.ID)
		}
		return ErrQueueFull
	}
	e.queuedReqs += len(rs)
	e.queuedTokens += n
	return nil
}

// dequeue releases a request's admission reservation (it was scheduled or
// it ended while queued).
func (e *Engine) dequeue(en *entry) {
	if !en.queued {
		return
	}
	en.queued = false
	e.admitMu.Lock()
	e.queuedReqs--
	e.queuedTokens -= len(en.req.PromptTokenIDs)
	e.admitMu.Unlock()
}

func (e *Engine) release(id string, queued bool, promptTokens int) {
	e.admitMu.Lock()
	delete(e.active, id)
	if queued {
		e.queuedReqs--
		e.queuedTokens -= promptTokens
	}
	e.admitMu.Unlock()
}

// Abort aborts a live request with finish reason abort and the given cause
// (see the Cause constants). It never blocks and is a no-op for unknown or
// finished requests.
func (e *Engine) Abort(id, cause string) {
	e.abort(id, scheduler.FinishAbort, cause)
}

// StopRequest ends a live request with finish reason stop (a stop string
// matched outside the engine).
func (e *Engine) StopRequest(id string) {
	e.abort(id, scheduler.FinishStop, CauseStopString)
}

func (e *Engine) abort(id string, reason scheduler.FinishReason, cause string) {
	e.mu.Lock()
	e.aborts = append(e.aborts, abortMsg{id: id, reason: reason, cause: cause})
	e.mu.Unlock()
	e.signal()
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Snapshot is a consistent view of the engine's counters. Stats are
// published before a request stops counting in NumActive, so a request seen
// gone has its KV blocks shown freed.
type Snapshot struct {
	Stats           scheduler.Stats // after the last step or abort
	NumActive       int             // accepted and not yet ended
	NumQueued       int             // accepted and not yet scheduled
	NumQueuedTokens int
	Steps           uint64 // steps executed
}

// Snapshot returns the engine's counters.
func (e *Engine) Snapshot() Snapshot {
	e.admitMu.Lock()
	defer e.admitMu.Unlock()
	return Snapshot{
		Stats:           e.lastStats,
		NumActive:       len(e.active),
		NumQueued:       e.queuedReqs,
		NumQueuedTokens: e.queuedTokens,
		Steps:           e.stepsExecuted,
	}
}

// Shutdown stops admitting requests, lets in-flight requests finish until
// ctx is done, then aborts the rest (cause shutdown), and returns once the
// loop goroutine has exited. It returns ctx's error when the grace period
// ran out, nil otherwise. Calling it again waits for the same exit.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closing = true
	e.mu.Unlock()
	e.signal()
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
	}
	e.mu.Lock()
	e.abortAll = true
	e.mu.Unlock()
	e.signal()
	<-e.done
	return ctx.Err()
}

// Done is closed when the loop has exited.
func (e *Engine) Done() <-chan struct{} { return e.done }

// deadlineHeap orders live requests by deadline (lazy deletion).
type deadlineItem struct {
	at time.Time
	id string
}

type deadlineHeap []deadlineItem

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadlineItem)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
