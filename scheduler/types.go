package scheduler

import "time"

// This file holds the data shapes shared by the scheduler, the runner, the
// engine and tracing. Keep them small: other packages build on them.

// Policy selects the order in which waiting requests are admitted and the
// victim of a preemption.
type Policy int

const (
	// PolicyFCFS admits in arrival order and preempts the last running request.
	PolicyFCFS Policy = iota
	// PolicyPriority admits the lowest Priority value first (ties by arrival)
	// and preempts the request with the highest Priority value (latest arrival
	// on ties).
	PolicyPriority
)

// HashAlgo selects the block hash function of the prefix cache.
type HashAlgo int

const (
	// HashSHA256 is the default: collision resistant, safe across tenants.
	HashSHA256 HashAlgo = iota
	// HashFast is a fast non-cryptographic hash for single-tenant use.
	HashFast
)

// Config is the scheduler and KV block manager configuration. Zero values of
// optional fields select the documented defaults (see New).
type Config struct {
	MaxNumSeqs                int // running requests at most
	MaxNumBatchedTokens       int // token budget per step
	MaxModelLen               int // prompt + output tokens at most
	LongPrefillTokenThreshold int // 0: no per-request cap on prefill tokens per step
	Policy                    Policy

	BlockSize           int // tokens per KV block
	NumBlocks           int // KV blocks including the null block 0
	EnablePrefixCaching bool
	HashAlgo            HashAlgo
	// ModelID is mixed into the first block's hash (model/adapter identity).
	ModelID string

	// MaxSkips bounds skip-ahead admission: a waiting request that does not
	// fit may be passed by smaller ones at most this many times, after which
	// nothing behind it is admitted until it fits. 0 selects the default.
	MaxSkips int
}

// SamplingParams are the per-request generation parameters, with vLLM's
// meanings. The zero value is not valid for generation: use DefaultSamplingParams.
type SamplingParams struct {
	Temperature       float32 // 0 = greedy
	TopP              float32 // 1 = off
	TopK              int     // <= 0 = off
	MinP              float32 // 0 = off
	Seed              int64   // used when HasSeed
	HasSeed           bool
	PresencePenalty   float32 // 0 = off
	FrequencyPenalty  float32 // 0 = off
	RepetitionPenalty float32 // 1 = off
	LogitBias         map[int32]float32
	MinTokens         int     // EOS and stop ids masked until this many outputs
	MaxTokens         int     // output tokens at most (> 0)
	StopTokenIDs      []int32 // stop when one of these is sampled (after MinTokens)
	IgnoreEOS         bool
	Logprobs          int // < 0: none; 0: the sampled token's logprob; k: plus the top k
	// PromptLogprobs asks for the logprobs of the prompt tokens (vLLM's
	// prompt_logprobs): < 0: none; 0: each prompt token's logprob; k: plus
	// the top k at its position. Such a request reads nothing from the
	// prefix cache before its first output (cached positions have no logits).
	PromptLogprobs int
}

// DefaultSamplingParams returns vLLM's defaults with the given max_tokens.
func DefaultSamplingParams(maxTokens int) SamplingParams {
	return SamplingParams{Temperature: 1, TopP: 1, RepetitionPenalty: 1, MaxTokens: maxTokens, Logprobs: -1, PromptLogprobs: -1}
}

// Request is what the engine hands to the scheduler.
type Request struct {
	ID             string
	PromptTokenIDs []int32
	Params         SamplingParams
	EOSTokenIDs    []int32 // the model's end-of-sequence ids
	Priority       int     // lower is more urgent (PolicyPriority)
	CacheSalt      string  // isolates prefix-cache entries between tenants
	// ObserverState is opaque to the scheduler: the Observer's own state
	// of the request (journey tracing's), handed back to it by
	// RequestView.ObserverState so that it needs no lookup by id.
	ObserverState any
}

// FinishReason says why a request ended. The empty string means it has not.
type FinishReason string

const (
	FinishNone   FinishReason = ""
	FinishStop   FinishReason = "stop"   // EOS, stop token id, or stop string
	FinishLength FinishReason = "length" // max_tokens or max_model_len
	FinishAbort  FinishReason = "abort"  // client gone, deadline, shutdown
	FinishError  FinishReason = "error"
)

// NewRequest is a request scheduled for the first time (or, after a
// preemption, scheduled again: see CachedRequest.Resumed).
type NewRequest struct {
	ID                string
	PromptTokenIDs    []int32
	BlockIDs          []int32 // the request's whole block table
	NumComputedTokens int     // tokens already in the KV cache (prefix hits)
	Params            *SamplingParams
}

// CachedRequest is the per-step diff of a request the runner already knows.
type CachedRequest struct {
	ID      string
	Resumed bool // resumed after preemption: BlockIDs replace the block table
	// NewTokenIDs is set only when Resumed: all output tokens so far, which
	// the runner already holds and must recompute along with the prompt.
	NewTokenIDs       []int32
	NewBlockIDs       []int32 // appended to the block table (whole table when Resumed)
	NumComputedTokens int     // tokens in the KV cache before this step
}

// Output is one step-numbered batch. Everything derived from it carries Step.
type Output struct {
	Step           uint64
	NewRequests    []NewRequest
	CachedRequests []CachedRequest
	// NumScheduledTokens holds the tokens scheduled this step per request id.
	NumScheduledTokens      map[string]int
	TotalNumScheduledTokens int
	// FinishedRequestIDs are requests that ended since the previous step
	// (finished or aborted): the runner drops their state.
	FinishedRequestIDs []string
	// PreemptedRequestIDs were preempted while building this step.
	PreemptedRequestIDs []string
}

// TopLogprob is one entry of a top-k logprob list.
type TopLogprob struct {
	TokenID int32
	Logprob float32
}

// TokenLogprobs are the raw logprobs of one sampled token.
type TokenLogprobs struct {
	TokenID int32
	Logprob float32
	Rank    int // 1 = most likely
	Top     []TopLogprob
}

// PromptLogprobsChunk are the prompt logprobs one step computed for one
// request: Logprobs[i] belongs to prompt token Start+i (Start >= 1; the
// first prompt token has none), computed from the logits at the position
// before it. TokenID is the prompt token, Rank its rank, Top the top k.
type PromptLogprobsChunk struct {
	ReqID    string
	Start    int
	Logprobs []TokenLogprobs
}

// StepTiming is the time the runtime spent on one step.
type StepTiming struct {
	Prepare time.Duration // building the flat inputs
	Forward time.Duration // model forward (device time where the device measures it)
	Sample  time.Duration // sampling (device time where measured)
}

// RunnerOutput is what executing one Output produced.
type RunnerOutput struct {
	Step   uint64   // the Step of the Output it executed
	ReqIDs []string // requests that sampled a token this step
	// SampledTokenIDs[i] are the tokens sampled for ReqIDs[i] (one today).
	SampledTokenIDs [][]int32
	// Logprobs[i] is set when ReqIDs[i] asked for logprobs.
	Logprobs [][]TokenLogprobs
	// PromptLogprobs holds the prompt logprobs computed this step, one
	// chunk per request that asked for them and computed prompt positions
	// (chunked prefill spreads them over several steps).
	PromptLogprobs []PromptLogprobsChunk
	Timing         StepTiming
}

// RequestOutput is the per-request delta returned by Update.
type RequestOutput struct {
	ID          string
	Step        uint64 // the step of the batch that produced it
	NewTokenIDs []int32
	Logprobs    []TokenLogprobs
	// PromptLogprobs is set on the first output of a request that asked for
	// them: entry i belongs to prompt token i+1 (len = prompt length - 1;
	// nil when the runner reported none).
	PromptLogprobs  []TokenLogprobs
	FinishReason    FinishReason
	NumCachedTokens int // prompt tokens served from the prefix cache
}

// Stats are the scheduler statistics after an Update.
type Stats struct {
	Step               uint64
	NumRunning         int
	NumWaiting         int
	KVUsage            float64 // blocks held by live requests / usable blocks
	KVBlocksTotal      int     // usable blocks (null block excluded)
	KVBlocksFree       int
	KVBlocksCachedFree int // free blocks still holding a prefix-cache entry
	// Cumulative counters (tokens for the prefix cache).
	PrefixCacheQueries uint64
	PrefixCacheHits    uint64
	NumPreemptions     uint64
	NumResumes         uint64
}

// Phase is a request's phase as tracing reports it.
type Phase string

const (
	PhaseWaiting Phase = "WAITING" // queued, never scheduled
	PhasePrefill Phase = "PREFILL" // no output yet
	PhaseDecode  Phase = "DECODE"
)

// RequestView is a read-only view of a request's scheduling state, for
// tracing and metrics. Every method is O(1).
type RequestView interface {
	RequestID() string
	NumPromptTokens() int
	NumComputedTokens() int
	NumOutputTokens() int
	MaxTokens() int
	PrefillHighWater() int // prefill progress high-water mark, capped at the prompt length
	Phase() Phase
	NumPreemptions() int
	NumCachedTokens() int // prompt tokens served by the prefix cache at first schedule
	BlocksAllocated() int
	BlocksCached() int // blocks that came from prefix-cache hits
	Priority() int
	ObserverState() any // Request.ObserverState, as given
}

// Observer receives scheduling events as they happen inside Schedule,
// Update and Abort, synchronously and on the caller's goroutine. Journey and
// step tracing implement it; nil means none. Implementations must not call
// back into the scheduler except through the views they are given.
type Observer interface {
	Queued(r RequestView, step uint64)
	Scheduled(r RequestView, step uint64, resumed bool)
	FirstToken(r RequestView, step uint64)
	Preempted(r RequestView, step uint64)
	Finished(r RequestView, step uint64, reason FinishReason)
	// StepBuilt is called at the end of Schedule, after out is built and
	// before post-schedule bookkeeping; start is the monotonic time at entry.
	StepBuilt(out *Output, v StepView)
}

// BatchCounts are a step's scheduled requests without output tokens yet
// (prefill) and with some (decode), and the tokens scheduled for each
// group.
type BatchCounts struct {
	PrefillReqs, DecodeReqs     int
	PrefillTokens, DecodeTokens int
}

// StepView gives StepBuilt what it needs without exposing the scheduler.
type StepView interface {
	NumRunning() int
	NumWaiting() int
	KVUsage() float64
	KVBlocksTotal() int
	KVBlocksFree() int
	NumFinishedSincePrevStep() int
	// Batch counts the step's scheduled requests and tokens by phase,
	// counted while the step was built: reading them costs nothing, where
	// Running visits every running request.
	Batch() BatchCounts
	// Running calls fn for each running request with the tokens scheduled
	// for it in this step and its computed tokens before the step.
	Running(fn func(r RequestView, scheduledTokens, computedBefore int))
	StartTime() time.Time
}
