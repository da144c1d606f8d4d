package sample

import (
	"math"
	"slices"
	"sort"

	"github.com/vserve/vserve/runtime/kernel"
)

// This file is a deliberately plain float64 reference of the package
// specification: full sorts, explicit loops, no shared code with the
// implementation. float32 rounding is applied only where the
// specification says a step is float32 (bias and penalties), by rounding
// each float64 operation of two float32 values, which is exact.

func f32(v float64) float64 { return float64(float32(v)) }

// refProcessed applies the logit bias, then the penalties.
func refProcessed(x []float32, p kernel.SampleParams, prompt, output []int32, bias map[int32]float32) []float64 {
	z := make([]float64, len(x))
	for i, v := range x {
		z[i] = float64(v)
	}
	for id, b := range bias {
		z[id] = f32(z[id] + float64(b))
	}
	counts := map[int32]int{}
	for _, t := range output {
		counts[t]++
	}
	seen := map[int32]bool{}
	for _, t := range prompt {
		seen[t] = true
	}
	for t := range counts {
		seen[t] = true
	}
	for t := range seen {
		v := z[t]
		if rep := float64(p.RepetitionPenalty); rep != 1 {
			if v > 0 {
				v = f32(v / rep)
			} else {
				v = f32(v * rep)
			}
		}
		if c, ok := counts[t]; ok {
			v = f32(v - f32(float64(p.FrequencyPenalty)*float64(c)))
			v = f32(v - float64(p.PresencePenalty))
		}
		z[t] = v
	}
	return z
}

// refResult is what the reference decides for one row.
type refResult struct {
	greedy bool
	token  int32
	kept   []int32   // canonical order
	probs  []float64 // probability of each kept token (same order)
	// margin is the distance, in weight units relative to the total, from
	// the draw target (and the top_p target) to the nearest boundary.
	margin float64
}

func refArgmax(z []float64) int32 {
	best := 0
	for i, v := range z {
		if v > z[best] {
			best = i
		}
	}
	return int32(best)
}

// refSample follows steps 4 to 8 of the specification on processed logits.
func refSample(z []float64, p kernel.SampleParams) refResult {
	if p.Temperature < GreedyEpsilon {
		return refResult{greedy: true, token: refArgmax(z), margin: math.Inf(1)}
	}
	T := float64(p.Temperature)
	zmax := z[refArgmax(z)]
	var ids []int32
	for i, v := range z {
		if math.IsInf(v, -1) {
			continue
		}
		if p.MinP > 0 && v < zmax+T*math.Log(float64(p.MinP)) {
			continue
		}
		ids = append(ids, int32(i))
	}
	// Canonical order: descending z, ascending id.
	sort.SliceStable(ids, func(a, b int) bool { return z[ids[a]] > z[ids[b]] })
	if k := p.TopK; k > 0 && k < len(z) && len(ids) > k {
		kth := z[ids[k-1]]
		n := 0
		for n < len(ids) && z[ids[n]] >= kth {
			n++
		}
		ids = ids[:n]
	}
	w := make([]float64, len(ids))
	for j, id := range ids {
		w[j] = math.Exp((z[id] - zmax) / T)
	}
	margin := math.Inf(1)
	total := sum(w)
	if p.TopP < 1 {
		target := float64(p.TopP) * total
		cum, n := 0.0, 0
		for j := range ids {
			margin = math.Min(margin, math.Abs(cum-target)/total)
			if cum < target {
				n = j + 1
			}
			cum += w[j]
		}
		ids, w = ids[:n], w[:n]
		total = sum(w)
	}
	t := Uniform(p.Seed, p.Offset) * total
	cum := 0.0
	token := ids[len(ids)-1]
	for j, id := range ids {
		cum += w[j]
		if cum > t {
			token = id
			break
		}
	}
	cum = 0
	for j := range ids {
		cum += w[j]
		margin = math.Min(margin, math.Abs(cum-t)/total)
	}
	probs := make([]float64, len(w))
	for j := range w {
		probs[j] = w[j] / total
	}
	return refResult{token: token, kept: ids, probs: probs, margin: margin}
}

func sum(w []float64) float64 {
	s := 0.0
	for _, v := range w {
		s += v
	}
	return s
}

// refLogSoftmax is log-softmax in float64.
func refLogSoftmax(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	s := 0.0
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	lse := m + math.Log(s)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) - lse
	}
	return out
}

// refTop returns the k ids with the largest logprob, ties by ascending id.
func refTop(lp []float64, k int) []int32 {
	ids := make([]int32, len(lp))
	for i := range ids {
		ids[i] = int32(i)
	}
	slices.SortStableFunc(ids, func(a, b int32) int {
		switch {
		case lp[a] > lp[b]:
			return -1
		case lp[a] < lp[b]:
			return 1
		}
		return 0
	})
	return ids[:k]
}
