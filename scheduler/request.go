package scheduler

import "github.com/vserve/vserve/kvcache"

type reqState uint8

const (
	stateWaiting  reqState = iota // queued, or preempted and queued again
	stateRunning                  // in the running set
	stateFinished                 // finished or aborted; no longer known by id
)

// request is the scheduler's state of one request. It implements
// RequestView (every method O(1)).
type request struct {
	id        string
	tokens    []int32 // prompt + outputs; capacity prompt+max_tokens, only ever appended
	numPrompt int
	params    SamplingParams
	eos       []int32
	priority  int
	arrival   uint64 // admission order for FCFS ties
	state     reqState

	everScheduled bool
	firstToken    bool
	numComputed   int // tokens in the KV cache (advanced optimistically)
	seq           kvcache.Seq

	numCachedTokens int // prompt tokens hit in the prefix cache at first schedule
	highWater       int // prefill progress high-water mark (<= numPrompt)
	numPreemptions  int
	// protectOutputs: the request may not be chosen as a preemption victim
	// while it has fewer outputs than this (set on preemption to outputs+1,
	// so a resumed request is safe until it has produced a new token).
	protectOutputs int
	skips          int // times passed by a request behind it in the waiting queue

	// promptLogprobs accumulates the prompt logprobs over prefill chunks
	// (entry i: prompt token i+1) until the first output carries them.
	promptLogprobs []TokenLogprobs

	schedStep   uint64 // step that last scheduled it
	schedTokens int    // tokens scheduled in schedStep
	finish      FinishReason

	observerState any // Request.ObserverState
}

func (r *request) numOutputs() int  { return len(r.tokens) - r.numPrompt }
func (r *request) protected() bool  { return r.numOutputs() < r.protectOutputs }
func (r *request) prompt() []int32  { return r.tokens[:r.numPrompt:r.numPrompt] }
func (r *request) outputs() []int32 { return r.tokens[r.numPrompt:len(r.tokens):len(r.tokens)] }

// wantsPromptLogprobs reports whether r still needs its prompt logprobs:
// it asked for them and has not delivered them with its first output.
func (r *request) wantsPromptLogprobs() bool { return r.params.PromptLogprobs >= 0 && !r.firstToken }

func (r *request) before(o *request) bool {
	if r.priority != o.priority {
		return r.priority < o.priority
	}
	return r.arrival < o.arrival
}

// RequestView implementation.

func (r *request) RequestID() string      { return r.id }
func (r *request) NumPromptTokens() int   { return r.numPrompt }
func (r *request) NumComputedTokens() int { return r.numComputed }
func (r *request) NumOutputTokens() int   { return r.numOutputs() }
func (r *request) MaxTokens() int         { return r.params.MaxTokens }
func (r *request) PrefillHighWater() int  { return r.highWater }
func (r *request) NumPreemptions() int    { return r.numPreemptions }
func (r *request) NumCachedTokens() int   { return r.numCachedTokens }
func (r *request) BlocksAllocated() int   { return r.seq.NumBlocks() }
func (r *request) BlocksCached() int      { return r.seq.NumHitBlocks() }
func (r *request) Priority() int          { return r.priority }
func (r *request) ObserverState() any     { return r.observerState }
func (r *request) Phase() Phase {
	switch {
	case !r.everScheduled:
		return PhaseWaiting
	case r.numOutputs() == 0:
		return PhasePrefill
	}
	return PhaseDecode
}
