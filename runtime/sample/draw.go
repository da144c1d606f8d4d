package sample

import (
	"math"

	"github.com/vserve/vserve/runtime/kernel"
)

// cand is a token that survived min_p and top_k, with its processed logit
// z and unnormalised weight w = exp((z - max)/T).
type cand struct {
	w  float64
	z  float32
	id int32
}

// before is the canonical order of candidates: descending logit, ties by
// ascending id. It is a strict total order (ids are unique).
func before(a, b *cand) bool {
	return a.z > b.z || (a.z == b.z && a.id < b.id)
}

// rowFilter describes min_p and top_k for a row: the tokens with
// z >= thr are kept, with weights exp(-(zmax - z)/T).
type rowFilter struct {
	zmax, thr float32
	invT      float64
}

// weight is the unnormalised probability of a kept logit. Every path uses
// this one expression, so a token's weight is the same wherever it is
// computed.
func (f *rowFilter) weight(v float32) float64 {
	return expNeg(-(float64(f.zmax) - float64(v)) * f.invT)
}

// bucket maps a kept logit to its histogram bucket: bucketsPerNat buckets
// per nat of -log(weight), the last bucket taking everything beyond.
// It is monotone: a larger logit never lands in a later bucket.
func (f *rowFilter) bucket(v float32) int {
	d := (float64(f.zmax) - float64(v)) * f.invT * bucketsPerNat
	if d < numBuckets-1 {
		return int(d)
	}
	return numBuckets - 1
}

const (
	numBuckets    = 1024
	bucketsPerNat = 32 // buckets 0..1022 cover weights down to e^-32
)

// smallTopK is the largest top_k for which the kept set is collected
// directly after a heap selection; otherwise the histogram path is used.
const smallTopK = 1024

// draw samples one token from the processed logits z of a row whose
// temperature is at least GreedyEpsilon.
func (w *worker) draw(z []float32, p *kernel.SampleParams) (int32, error) {
	f, small, err := w.prefilter(z, p)
	if err != nil {
		return 0, err
	}
	u := Uniform(p.Seed, p.Offset)
	if !small && p.TopP == 1 {
		return w.drawBucketed(z, &f, u), nil
	}
	cands, total := w.keepMaterialized(z, &f, p.TopP, small)
	if len(cands) == 1 {
		return cands[0].id, nil
	}
	pos, _ := crossing(cands, u*total, false)
	return cands[pos].id, nil
}

// keep applies min_p, top_k and top_p to z and returns every kept token
// with its weight, and the weights' sum (used by tests; draw avoids
// materialising large keep sets).
func (w *worker) keep(z []float32, p *kernel.SampleParams) ([]cand, float64, error) {
	f, small, err := w.prefilter(z, p)
	if err != nil {
		return nil, 0, err
	}
	if !small && p.TopP == 1 {
		small = true // materialise everything
	}
	cands, total := w.keepMaterialized(z, &f, p.TopP, small)
	return cands, total, nil
}

// prefilter finds the maximum and the min_p and top_k threshold. small
// reports a top_k small enough for the direct path.
func (w *worker) prefilter(z []float32, p *kernel.SampleParams) (rowFilter, bool, error) {
	temp := float64(p.Temperature)
	if p.MinP == 0 && p.TopK > 0 && p.TopK <= smallTopK && p.TopK < len(z) {
		// The common top_k case: one pass finds both the maximum and the
		// k-th largest value.
		kth, zmax, err := w.heapTopK(z, p.TopK)
		if err != nil {
			return rowFilter{}, false, err
		}
		return rowFilter{zmax: zmax, thr: kth, invT: 1 / temp}, true, nil
	}
	_, zmax, err := argmax(z)
	if err != nil {
		return rowFilter{}, false, err
	}
	f := rowFilter{zmax: zmax, thr: minPThreshold(zmax, temp, p.MinP), invT: 1 / temp}
	small := false
	if p.TopK > 0 && p.TopK < len(z) {
		small = p.TopK <= smallTopK
		if kth := w.kthLargest(z, f.thr, p.TopK); kth > f.thr {
			f.thr = kth
		}
	}
	return f, small, nil
}

// keepMaterialized returns the kept tokens after top_p as an array whose
// canonical order is implied (not sorted). With small, all tokens above
// the threshold are collected; otherwise a histogram first bounds the
// top_p crossing and only the buckets up to it are collected.
func (w *worker) keepMaterialized(z []float32, f *rowFilter, topP float32, small bool) ([]cand, float64) {
	var cands []cand
	var total float64
	if small {
		cands, total = w.collect(z, f, numBuckets)
	} else {
		total = w.histogram(z, f)
		cut, _ := w.passBucket(float64(topP)*total, true)
		cands, _ = w.collect(z, f, cut+1)
	}
	if len(cands) > 1 && topP < 1 {
		pos, _ := crossing(cands, float64(topP)*total, true)
		cands = cands[:pos+1]
		total = sumWeights(cands)
	}
	return cands, total
}

// drawBucketed draws from every kept token without materialising them:
// the histogram locates the bucket holding the crossing of u·total, and
// only that bucket's tokens are collected and searched.
func (w *worker) drawBucketed(z []float32, f *rowFilter, u float64) int32 {
	total := w.histogram(z, f)
	target := u * total
	b, before := w.passBucket(target, false)
	cands := w.collectBucket(z, f, b)
	pos, _ := crossing(cands, target-before, false)
	return cands[pos].id
}

// passBucket returns the first bucket at which the running sum of bucket
// masses passes target (> or, when inclusive, >=), and the mass before it.
func (w *worker) passBucket(target float64, inclusive bool) (int, float64) {
	cum := 0.0
	last := 0
	for b, m := range w.mass {
		if m == 0 {
			continue
		}
		last = b
		if next := cum + m; next > target || (inclusive && next >= target) {
			return b, cum
		}
		cum += m
	}
	return last, cum - w.mass[last] // only through rounding
}

// minPThreshold returns the smallest kept logit as a float32 threshold:
// without min_p every finite logit is kept; with min_p a token is kept iff
// float64(z) >= float64(zmax) + T*ln(minP) (evaluated in float64), which is
// prob >= minP * prob_max after temperature. The float32 returned is the
// smallest float32 satisfying that, so "z >= thr" decides it exactly.
func minPThreshold(zmax float32, temp float64, minP float32) float32 {
	lowest := -math.MaxFloat32
	if minP <= 0 {
		return float32(lowest)
	}
	t64 := float64(zmax) + temp*math.Log(float64(minP))
	if t64 <= lowest {
		return float32(lowest)
	}
	t32 := float32(t64)
	if float64(t32) < t64 {
		t32 = math.Nextafter32(t32, float32(math.Inf(1)))
	}
	return t32
}

// heapSelectMaxK is the largest k selected with a heap; larger k use
// quickselect on a copy of the candidate values.
const heapSelectMaxK = smallTopK

// kthLargest returns the k-th largest value (counting repeats) among the
// values of z that are >= thr, or -Inf when fewer than k are.
func (w *worker) kthLargest(z []float32, thr float32, k int) float32 {
	if k <= heapSelectMaxK {
		return w.kthLargestHeap(z, thr, k)
	}
	vals := w.vals[:0]
	for _, v := range z {
		if v >= thr {
			vals = append(vals, v)
		}
	}
	w.vals = vals
	if len(vals) < k {
		return float32(math.Inf(-1))
	}
	return quickselectDesc(vals, k-1)
}

// kthLargestHeap keeps the k largest values seen in a min-heap; after the
// heap fills, most values are rejected by one comparison with its root.
func (w *worker) kthLargestHeap(z []float32, thr float32, k int) float32 {
	h := w.heap[:0]
	i := 0
	for ; i < len(z) && len(h) < k; i++ {
		if v := z[i]; v >= thr {
			h = append(h, v)
			siftUpMin(h, len(h)-1)
		}
	}
	w.heap = h
	if len(h) < k {
		return float32(math.Inf(-1))
	}
	root := h[0]
	for _, v := range z[i:] {
		if v > root {
			h[0] = v
			siftDownMin(h, 0)
			root = h[0]
		}
	}
	return root
}

// heapTopK scans z once for its maximum and its k-th largest finite value
// (counting repeats; the lowest finite float32 when fewer than k are
// finite), with argmax's checks: NaN or +Inf fail, all -Inf is masked.
func (w *worker) heapTopK(z []float32, k int) (kth, zmax float32, err error) {
	const lowest = -math.MaxFloat32
	h := w.heap[:0]
	nan := false
	i := 0
	for ; i < len(z) && len(h) < k; i++ {
		v := z[i]
		if v >= lowest {
			h = append(h, v)
			siftUpMin(h, len(h)-1)
		}
		if v != v {
			nan = true
		}
	}
	w.heap = h
	if len(h) == k {
		root := h[0]
		for _, v := range z[i:] {
			if v > root {
				h[0] = v
				siftDownMin(h, 0)
				root = h[0]
			}
			if v != v {
				nan = true
			}
		}
	}
	switch {
	case nan:
		return 0, 0, ErrNonFinite
	case len(h) == 0:
		return 0, 0, ErrAllMasked
	}
	zmax = h[0]
	for _, v := range h {
		zmax = max(zmax, v)
	}
	if math.IsInf(float64(zmax), 1) {
		return 0, 0, ErrNonFinite
	}
	kth = lowest
	if len(h) == k {
		kth = h[0]
	}
	return kth, zmax, nil
}

func siftUpMin(h []float32, j int) {
	for j > 0 {
		parent := (j - 1) / 2
		if h[parent] <= h[j] {
			return
		}
		h[parent], h[j] = h[j], h[parent]
		j = parent
	}
}

func siftDownMin(h []float32, j int) {
	n := len(h)
	for {
		l := 2*j + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && h[r] < h[l] {
			c = r
		}
		if h[j] <= h[c] {
			return
		}
		h[j], h[c] = h[c], h[j]
		j = c
	}
}

// quickselectDesc returns the element that would be at index n if vals
// were sorted in descending order (vals is reordered).
func quickselectDesc(vals []float32, n int) float32 {
	lo, hi := 0, len(vals)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		pivot := median3(vals[lo], vals[mid], vals[hi])
		i, j := lo, hi
		for i <= j {
			for vals[i] > pivot {
				i++
			}
			for vals[j] < pivot {
				j--
			}
			if i <= j {
				vals[i], vals[j] = vals[j], vals[i]
				i++
				j--
			}
		}
		switch {
		case n <= j:
			hi = j
		case n >= i:
			lo = i
		default:
			return vals[n]
		}
	}
	return vals[lo]
}

func median3(a, b, c float32) float32 {
	if a > b {
		a, b = b, a
	}
	if b > c {
		b = c
	}
	if a > b {
		b = a
	}
	return b
}

func sumWeights(c []cand) float64 {
	s := 0.0
	for i := range c {
		s += c[i].w
	}
	return s
}

// smallCrossing is the range size below which crossing sorts and scans.
const smallCrossing = 16

// crossing finds the first candidate, in canonical order, at which the
// running sum of weights passes target: cum > target, or cum >= target
// when inclusive. It reorders c so that c[:pos] are exactly the candidates
// canonically before c[pos] (in no particular order), and returns pos and
// the weight before it. This is a weighted quickselect: expected O(n), no
// full sort. If rounding leaves the sum short of target, the canonically
// last candidate is returned.
func crossing(c []cand, target float64, inclusive bool) (int, float64) {
	passes := func(cum float64) bool { return cum > target || (inclusive && cum == target) }
	lo, hi := 0, len(c)
	acc := 0.0
	budget := 2 * bitLen(len(c)) // partition rounds before falling back to sorting
	for hi-lo > smallCrossing && budget > 0 {
		budget--
		piv, mass := partitionAroundPivot(c, lo, hi)
		switch {
		case passes(acc + mass):
			hi = piv
		case passes(acc + mass + c[piv].w):
			return piv, acc + mass
		default:
			acc += mass + c[piv].w
			lo = piv + 1
		}
	}
	if lo == hi {
		// Only reachable through rounding: everything was summed.
		return hi - 1, acc - c[hi-1].w
	}
	sortCanonical(c[lo:hi])
	for k := lo; k < hi; k++ {
		if passes(acc + c[k].w) {
			return k, acc
		}
		acc += c[k].w
	}
	return hi - 1, acc - c[hi-1].w
}

func bitLen(n int) int {
	b := 0
	for n > 0 {
		b++
		n >>= 1
	}
	return b
}

// partitionAroundPivot picks the median of three candidates of c[lo:hi] as
// pivot, moves the candidates canonically before it to the front, places
// the pivot after them and returns its index and their total weight.
func partitionAroundPivot(c []cand, lo, hi int) (int, float64) {
	mid := lo + (hi-lo)/2
	p := medianIndex(c, lo, mid, hi-1)
	c[p], c[hi-1] = c[hi-1], c[p]
	pv := c[hi-1]
	i := lo
	mass := 0.0
	for j := lo; j < hi-1; j++ {
		if before(&c[j], &pv) {
			mass += c[j].w
			c[i], c[j] = c[j], c[i]
			i++
		}
	}
	c[i], c[hi-1] = c[hi-1], c[i]
	return i, mass
}

func medianIndex(c []cand, a, b, d int) int {
	if before(&c[b], &c[a]) {
		a, b = b, a
	}
	// now c[a] before c[b]
	if before(&c[d], &c[b]) {
		if before(&c[d], &c[a]) {
			return a
		}
		return d
	}
	return b
}

// sortCanonical is an insertion sort for the small ranges crossing ends
// with, and a fallback for adversarial inputs.
func sortCanonical(c []cand) {
	if len(c) > 64 {
		sortCanonicalLarge(c)
		return
	}
	for i := 1; i < len(c); i++ {
		x := c[i]
		j := i
		for j > 0 && before(&x, &c[j-1]) {
			c[j] = c[j-1]
			j--
		}
		c[j] = x
	}
}
