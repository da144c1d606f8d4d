// Package sample owns the sampling semantics shared by every backend:
// logit bias, repetition/presence/frequency penalties, temperature (0 =
// greedy), min_p, top_k, top_p, per-request seeded draws and raw logprobs
// with ranks and top logprobs, in the order and meaning of vLLM v1
// (vllm/v1/sample/sampler.py). The CPU backend's Sample op calls Sample;
// the CUDA backend implements the same specification and is checked
// against it.
//
// # Order of operations for one row
//
// Let x be the row's raw logits (float32, vocab V).
//
//  1. Raw logprobs (only when NumLogprobs >= 0), from x itself:
//     lse = max(x) + ln Σ exp(x_j - max(x)) in float64; the sampled
//     token's logprob is x_tok - lse; its rank is #{j : x_j >= x_tok}
//     (vLLM's count, so 1 is the most likely token and ties count
//     against it); the top NumLogprobs tokens are the largest x by
//     descending value, ties by ascending id, with their logprobs.
//  2. Logit bias: z = x + bias (float32). The runner puts the min_tokens
//     masks (EOS and stop ids) here as -Inf.
//  3. Penalties on z, in float32, in this order: for every token seen in
//     the prompt or the output, the repetition penalty r divides z when
//     z > 0 and multiplies it otherwise; then for tokens in the output
//     z -= frequency_penalty * count and z -= presence_penalty.
//  4. Temperature T. If T < GreedyEpsilon (1e-5) the token is the argmax
//     of z, ties to the lowest id, and steps 5 to 8 are skipped.
//     Otherwise weights are w_j = exp(-(max z - z_j) / T) in float64 (the
//     softmax of z/T up to normalisation); the exponential is expNeg, with
//     a relative error below 1e-11 (and 0 below e^-708).
//  5. min_p (if > 0): keep j iff float64(z_j) >= float64(max z) + T*ln(min_p),
//     i.e. p_j >= min_p * p_max. -Inf logits are never kept.
//  6. top_k (if 0 < k < V): among the kept tokens, keep those whose z is
//     >= the k-th largest kept z (counting repeats); as in vLLM, tokens
//     tied with the k-th value are all kept.
//  7. top_p (if < 1): order the kept tokens canonically (descending z,
//     ties by ascending id) and keep token j iff the weight of the kept
//     tokens before it is < top_p * (total kept weight): the smallest
//     canonical prefix whose mass reaches top_p.
//  8. Draw: u = Uniform(Seed, Offset); t = u * (total kept weight); the
//     token is the first kept token in canonical order at which the
//     running sum of weights exceeds t (inverse CDF).
//
// Sums of weights are float64; an implementation may add them in another
// order and compute exp to another last-bits accuracy, so two
// implementations can differ only when u (or top_p) falls within rounding
// error (~1e-11 relative) of a boundary between two tokens.
//
// # Random numbers
//
// Uniform(seed, offset) is counter based (SplitMix64 keyed by the seed,
// the token index as counter; see rng.go for the exact bit-level
// definition), so a request's tokens depend only on its seed and on the
// index of the token within the request, never on the rest of the batch.
//
// # Algorithms (no full sort of the vocabulary)
//
//   - Greedy and the maximum: one pass.
//   - min_p: a float32 threshold (the smallest float32 satisfying the
//     float64 inequality of step 5) compared in one pass.
//   - top_k: the k-th largest value by a min-heap of k values over one
//     pass (k <= 1024; after the heap fills, most values cost one
//     comparison with its root), or by quickselect on a copy of the kept
//     values for larger k. The kept set is then "z >= max(min_p
//     threshold, k-th value)", collected in one pass with the weights.
//   - top_p and the draw are the same query: "the first candidate in
//     canonical order at which the running weight passes a target". On a
//     materialised candidate array it is answered by a weighted
//     quickselect (crossing): partition around a median-of-three pivot
//     (canonical order), sum the weight of the part before the pivot, and
//     continue in the part that holds the crossing, carrying the weight
//     already passed. Expected O(n); ranges of <= 16 are sorted and
//     scanned; after 2*log2(n) rounds it falls back to sorting the
//     remaining range.
//   - Small top_k (<= 1024): the kept set (k tokens plus ties) is
//     materialised, top_p and the draw run crossing on it.
//   - Otherwise (no top_k or a large one) nothing vocabulary-sized is
//     sorted or, for the plain draw, even materialised: one pass computes
//     a weight histogram over 1024 buckets of -log(weight) (32 per nat,
//     the last bucket taking everything below e^-32); the bucket holding
//     the crossing is found by scanning the histogram; every token in an
//     earlier bucket is canonically before every token of that bucket
//     (buckets are monotone in z), so only that bucket's tokens (for
//     top_p: the buckets up to it) are collected and searched by
//     crossing, starting from the mass of the earlier buckets. A GPU port
//     can build the same histogram with atomics or a block reduction.
//   - Exponentials are computed a block of 256 tokens at a time (convert,
//     then exp) so that they pipeline.
//   - Raw logprobs: one pass for the maximum, one for the sum of
//     exponentials and the rank, a min-heap of NumLogprobs for the top.
//
// Rows are independent; a call spreads them over goroutines (Sampler.Workers)
// and each row is computed entirely by one goroutine, so results do not
// depend on the number of workers.
package sample
