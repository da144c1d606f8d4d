package sample

import (
	"math"
	"slices"
)

// idVal is a token id with its raw logit.
type idVal struct {
	v  float32
	id int32
}

// rawLogprobs computes, on the raw logits x (before bias, penalties and
// temperature), the log-softmax value of tok, its rank and the len(topIDs)
// most likely tokens:
//
//	lse        = max + ln(Σ exp(x_j - max))         (float64, exp by expNeg)
//	logprob(j) = float32(float64(x_j) - lse)
//	rank       = #{j : x_j >= x_tok}                 (vLLM: 1 = most likely; ties count)
//	top        = the k best by descending x, ties by ascending id
func (w *worker) rawLogprobs(x []float32, tok int32, topIDs []int32, topLPs []float32) (float32, int, error) {
	_, xmax, err := argmax(x)
	if err != nil {
		return 0, 0, err
	}
	m := float64(xmax)
	xt := x[tok]
	sum, rank := w.sumExpAndRank(x, m, xt)
	lse := m + math.Log(sum)
	if k := len(topIDs); k > 0 {
		top := w.topK(x, k)
		for j, e := range top {
			topIDs[j] = e.id
			topLPs[j] = float32(float64(e.v) - lse)
		}
	}
	return float32(float64(xt) - lse), rank, nil
}

// topK returns the k largest entries of x by descending value, ties by
// ascending id, using a min-heap of the k best so far.
func (w *worker) topK(x []float32, k int) []idVal {
	h := w.top[:0]
	i := 0
	for ; i < len(x) && len(h) < k; i++ {
		h = append(h, idVal{x[i], int32(i)})
		idValSiftUp(h, len(h)-1)
	}
	for ; i < len(x); i++ {
		// Ids grow, so an equal value never beats the root.
		if x[i] > h[0].v {
			h[0] = idVal{x[i], int32(i)}
			idValSiftDown(h, 0)
		}
	}
	slices.SortFunc(h, func(a, b idVal) int {
		if worse(b, a) {
			return -1
		}
		if worse(a, b) {
			return 1
		}
		return 0
	})
	w.top = h
	return h
}

// worse orders the heap: a is worse than b when it has a smaller value,
// or the same value and a larger id.
func worse(a, b idVal) bool {
	return a.v < b.v || (a.v == b.v && a.id > b.id)
}

func idValSiftUp(h []idVal, j int) {
	for j > 0 {
		parent := (j - 1) / 2
		if !worse(h[j], h[parent]) {
			return
		}
		h[parent], h[j] = h[j], h[parent]
		j = parent
	}
}

func idValSiftDown(h []idVal, j int) {
	n := len(h)
	for {
		l := 2*j + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && worse(h[r], h[l]) {
			c = r
		}
		if !worse(h[c], h[j]) {
			return
		}
		h[j], h[c] = h[c], h[j]
		j = c
	}
}
