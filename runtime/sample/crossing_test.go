package sample

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// scanCrossing is the definition of crossing: sort canonically and scan.
func scanCrossing(c []cand, target float64, inclusive bool) (int32, float64) {
	s := slices.Clone(c)
	sortCanonicalLarge(s)
	cum := 0.0
	margin := math.Inf(1)
	id := s[len(s)-1].id
	found := false
	for _, e := range s {
		cum += e.w
		margin = math.Min(margin, math.Abs(cum-target))
		if !found && (cum > target || (inclusive && cum >= target)) {
			id, found = e.id, true
		}
	}
	return id, margin
}

func TestCrossingMatchesSortedScan(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	shapes := []func(i int) float32{
		func(int) float32 { return float32(r.NormFloat64()) },
		func(int) float32 { return 1 },                             // all tied: id order
		func(i int) float32 { return float32(i) },                  // ascending
		func(i int) float32 { return -float32(i) },                 // descending
		func(int) float32 { return float32(r.IntN(4)) },            // heavy ties
		func(i int) float32 { return float32(i%7) - float32(i%3) }, // patterns
	}
	for trial := range 400 {
		n := 1 + r.IntN([]int{20, 300, 5000}[trial%3])
		shape := shapes[trial%len(shapes)]
		c := make([]cand, n)
		total := 0.0
		for i := range c {
			z := shape(i)
			c[i] = cand{z: z, id: int32(i), w: math.Exp(float64(z) / 2)}
			total += c[i].w
		}
		inclusive := trial%2 == 0
		target := r.Float64() * total
		want, margin := scanCrossing(c, target, inclusive)
		if margin < 1e-9*total {
			continue
		}
		work := slices.Clone(c)
		pos, massBefore := crossing(work, target, inclusive)
		require.Equal(t, want, work[pos].id, "trial %d n %d", trial, n)
		// Everything before pos is canonically before the crossing, with
		// the returned weight.
		sum := 0.0
		for _, e := range work[:pos] {
			require.True(t, before(&e, &work[pos]) || e.id == work[pos].id)
			sum += e.w
		}
		require.InDelta(t, sum, massBefore, 1e-9*total)
	}
}

// TestBucketedDrawMatchesReference drives the histogram path with chosen
// uniforms, including ones next to 1 whose crossing lies in the last
// (overflow) bucket, at temperatures that put most tokens there.
func TestBucketedDrawMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	us := []float64{0, 0.1, 0.5, 0.9, 0.999, 1 - 1e-9, 1 - 1e-13, 1 - 0x1p-53}
	var w worker
	for trial := range 60 {
		vocab := 100 + r.IntN(3000)
		x := randomLogits(r, vocab, 1+4*r.Float64())
		p := params([]float32{0.05, 0.3, 1, 2.5}[trial%4])
		f, _, err := w.prefilter(x, &p)
		require.NoError(t, err)
		for _, u := range us {
			// Reference inverse CDF in canonical order, float64.
			c := make([]cand, vocab)
			total := 0.0
			for i, v := range x {
				c[i] = cand{z: v, id: int32(i), w: f.weight(v)}
				total += c[i].w
			}
			want, margin := scanCrossing(c, u*total, false)
			if margin < 1e-12*total {
				continue
			}
			require.Equal(t, want, w.drawBucketed(x, &f, u), "trial %d T %v u %v", trial, p.Temperature, u)
		}
	}
}
