package engine

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/vserve/vserve/scheduler"
)

// Output is a coalesced delta of one request: everything published since
// the previous Next.
type Output struct {
	TokenIDs []int32
	Logprobs []scheduler.TokenLogprobs // parallel to TokenIDs when logprobs were asked
	// PromptLogprobs are set once, on the output that carries the first
	// token, when prompt logprobs were asked: entry i belongs to prompt
	// token i+1 (see scheduler.RequestOutput).
	PromptLogprobs []scheduler.TokenLogprobs
	// Finish is set on the final output.
	Finish scheduler.FinishReason
	// AbortCause says why an aborted or stopped request ended (see Cause*).
	AbortCause string
	// Err is set when Finish is FinishError.
	Err             error
	NumCachedTokens int
	// FirstTokenTime is when the engine published the request's first token.
	FirstTokenTime time.Time
	// Times is set on the final output.
	Times RequestTimes
}

// Finished reports whether this is the final output.
func (o *Output) Finished() bool { return o.Finish != scheduler.FinishNone }

// Stream delivers a request's outputs. The engine appends to an unbounded
// per-request buffer (bounded by max_tokens) and signals; it never waits
// for the reader.
type Stream struct {
	e  *Engine
	id string

	mu      sync.Mutex
	pending Output
	holding bool // pending holds a request's last tokens, shown with its end (finish)
	final   bool // the final output is in pending or was delivered
	drained bool // the final output was delivered
	notify  chan struct{}
	closed  bool
}

func newStream(e *Engine, id string, notify chan struct{}) *Stream {
	if notify == nil {
		notify = make(chan struct{}, 1)
	}
	return &Stream{e: e, id: id, notify: notify}
}

// ID is the request id.
func (s *Stream) ID() string { return s.id }

// push publishes new tokens; with last set they are the request's last,
// and readers see them only with the end that finish publishes next, so
// that the final output carries both (a reader tells a stop token by it).
func (s *Stream) push(tokens []int32, lps, promptLps []scheduler.TokenLogprobs, cached int, first time.Time, last bool) {
	if len(tokens) == 0 && len(lps) == 0 && promptLps == nil && cached == s.pendingCached() {
		return
	}
	s.mu.Lock()
	s.holding = last
	s.pending.TokenIDs = append(s.pending.TokenIDs, tokens...)
	s.pending.Logprobs = append(s.pending.Logprobs, lps...)
	if promptLps != nil {
		s.pending.PromptLogprobs = promptLps
	}
	s.pending.NumCachedTokens = cached
	s.pending.FirstTokenTime = first
	s.mu.Unlock()
	if !last {
		s.signal()
	}
}

func (s *Stream) pendingCached() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending.NumCachedTokens
}

func (s *Stream) finish(reason scheduler.FinishReason, cause string, err error, times RequestTimes) {
	s.mu.Lock()
	s.pending.Finish = reason
	s.pending.AbortCause = cause
	s.pending.Err = err
	s.pending.Times = times
	if s.pending.FirstTokenTime.IsZero() {
		s.pending.FirstTokenTime = times.FirstToken
	}
	s.final = true
	s.holding = false
	s.mu.Unlock()
	s.signal()
}

func (s *Stream) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// TryNext returns everything published since the previous call without
// waiting: ok is false when there is nothing new. After the final output it
// returns io.EOF.
func (s *Stream) TryNext() (o Output, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drained {
		return Output{}, false, io.EOF
	}
	if !s.final && (len(s.pending.TokenIDs) == 0 || s.holding) {
		return Output{}, false, nil
	}
	o = s.pending
	s.pending = Output{NumCachedTokens: o.NumCachedTokens, FirstTokenTime: o.FirstTokenTime}
	s.drained = s.final
	return o, true, nil
}

// Next returns everything published since the previous call, waiting until
// there is something. After the final output it returns io.EOF; when ctx
// ends first it returns ctx's error (the request keeps running: Close or
// Abort it).
func (s *Stream) Next(ctx context.Context) (Output, error) {
	for {
		if o, ok, err := s.TryNext(); ok || err != nil {
			return o, err
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Output{}, ctx.Err()
		}
	}
}

// Abort ends the request with finish reason abort and the given cause unless
// it has already finished.
func (s *Stream) Abort(cause string) {
	s.mu.Lock()
	final := s.final
	s.mu.Unlock()
	if !final {
		s.e.Abort(s.id, cause)
	}
}

// Stop ends the request with finish reason stop (a stop string matched).
func (s *Stream) Stop() {
	s.mu.Lock()
	final := s.final
	s.mu.Unlock()
	if !final {
		s.e.StopRequest(s.id)
	}
}

// Close releases the stream; a request that has not finished is aborted
// (cause client_disconnect). It is idempotent.
func (s *Stream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.Abort(CauseClientDisconnect)
}

// Collect reads the stream to its end and returns all tokens and the final
// output (with the tokens and logprobs concatenated, and the prompt
// logprobs when they were asked).
func (s *Stream) Collect(ctx context.Context) (Output, error) {
	var all Output
	for {
		o, err := s.Next(ctx)
		if err == io.EOF {
			return all, nil
		}
		if err != nil {
			return all, err
		}
		toks := append(all.TokenIDs, o.TokenIDs...)
		lps := append(all.Logprobs, o.Logprobs...)
		plps := all.PromptLogprobs
		if o.PromptLogprobs != nil {
			plps = o.PromptLogprobs
		}
		all = o
		all.TokenIDs, all.Logprobs, all.PromptLogprobs = toks, lps, plps
	}
}
