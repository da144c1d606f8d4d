// Package scheduler does continuous batching in the manner of vLLM v1.
//
// It is pure data in, pure data out: Schedule returns a step-numbered
// *Output describing which tokens of which requests run in the next batch,
// and Update applies a RunnerOutput and returns per-request deltas. It starts
// no goroutines, touches no device and uses no CGo; running out of KV blocks
// is a normal outcome (preemption), not an error. One goroutine (the engine
// loop) owns a Scheduler; it is not safe for concurrent use.
//
// # Scheduling
//
// A request has no prefill or decode phase in the scheduler: its computed
// tokens catch up with its tokens (prompt + outputs). Each Schedule call
// increments the step counter first, then spends a token budget
// (MaxNumBatchedTokens) on running requests in order, then on waiting ones
// up to MaxNumSeqs running. Long prompts are chunked; a request's share of
// one step is capped by LongPrefillTokenThreshold. Computed tokens advance
// when the step is built (optimistically), so a chunked prefill is scheduled
// again in the next step. When a running request needs a block and none is
// free, a victim is preempted by recompute (the last running request under
// FCFS; the highest Priority value, latest arrival on ties, under the
// priority policy): its blocks are freed (their prefix-cache entries stay,
// so resuming usually hits them), its computed tokens reset to 0, and it
// goes back to the front of the waiting queue. No request is admitted in a
// step that preempted.
//
// Beyond vLLM: a waiting request whose blocks do not fit may be passed by
// requests behind it at most MaxSkips times, after which nothing behind it
// is admitted until it fits (no head-of-line blocking, no starvation). A
// resumed request gets blocks for all its tokens at once and is exempt from
// preemption until it has produced a new token, so it is never preempted
// again before it has made progress (no preempt/resume thrash); the per
// request count is RequestView.NumPreemptions, the totals are
// Stats.NumPreemptions and Stats.NumResumes.
//
// # Runner contract
//
// The runner keeps, per request id, the token list (prompt + the outputs it
// sampled) and the block table. For each Output, in this order:
//
//  1. FinishedRequestIDs: drop these requests (finished or aborted since
//     the previous step; an id may reappear in NewRequests of the same
//     Output when a client reuses it, so drop first).
//  2. NewRequests: a request seen for the first time: the full prompt, the
//     whole block table, and NumComputedTokens (prefix-cache hits, always
//     less than the prompt length).
//  3. CachedRequests: NewBlockIDs are appended to the block table. When
//     Resumed (after a preemption), NewBlockIDs replace the block table
//     instead, and NewTokenIDs holds all output tokens so far: they replace
//     the runner's outputs (authoritative). NumComputedTokens is the number
//     of tokens in the KV cache before this step.
//  4. For each scheduled request, compute token positions NumComputedTokens
//     .. NumComputedTokens+NumScheduledTokens[id]-1 of its token list, and
//     sample a token only when that reaches the end of the token list (a
//     partial prefill chunk samples nothing). PreemptedRequestIDs are kept
//     by the runner (they come back with Resumed).
//
// A request's prefix-cache hits may point at blocks that an earlier step
// filled or that another request of the same step fills: as in vLLM, the
// full blocks an admitted request will compute enter the prefix cache when
// it is admitted, so that requests admitted after it in the same step (n > 1
// siblings, a shared system prompt) hit them instead of computing them
// again. So the runner must write a step's K/V (of each layer) before any
// attention of the step reads it, as the model's forward pass does
// (ReshapeAndCache for the whole batch, then PagedAttention). Blocks of
// running requests enter the cache after the step is built, because a
// running request may still be preempted while it is built. When a step
// fails (Update with a nil RunnerOutput), its blocks leave the cache again
// and its requests end with FinishError (see Update); the next Output
// tells the runner to drop them.
//
// The RunnerOutput lists the requests that sampled, with the Step of the
// Output it executed. Update ignores outputs of requests aborted or finished
// in the meantime, and applies stop checks in vLLM's order: min_tokens, EOS
// unless ignore_eos, stop_token_ids, max_model_len / max_tokens (length).
// Stop strings are matched outside (on text), which then calls Abort with
// FinishStop.
//
// Prompt logprobs (SamplingParams.PromptLogprobs >= 0, vLLM's
// prompt_logprobs): until its first output such a request reads nothing
// from the prefix cache (cached positions have no logits; its blocks still
// enter the cache). For every computed prompt position p of such a request
// with no output yet, the runner reports the entry of prompt token p+1 in
// RunnerOutput.PromptLogprobs; Update collects them by position over the
// prefill chunks (a prefill recomputed after preemption overwrites) and
// hands all of them over with the request's first output.
//
// # Ownership
//
// An Output and its slices and map belong to the scheduler and stay valid
// until the second following Schedule call (two buffers alternate, so a
// later engine can execute step N while building step N+1); callers must not
// modify them. The []RequestOutput returned by Update is reused by the next
// Update. With no Observer, a steady decode step allocates nothing.
//
// # Observability
//
// The step counter starts at 0, is incremented first thing in Schedule and
// never resets. An Observer (SetObserver) sees QUEUED (AddRequest, current
// counter), SCHEDULED (admission, the step being built, resumed or first),
// FIRST_TOKEN (the step of the batch that produced it), PREEMPTED (the step
// being built), FINISHED (natural stop: the producing step; abort: the
// current counter) and StepBuilt at the end of Schedule, before computed
// tokens advance. Every RequestView method is O(1).
package scheduler
