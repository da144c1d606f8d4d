package sample

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/vserve/vserve/runtime/kernel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// params returns vLLM's defaults with the given temperature.
func params(temp float32) kernel.SampleParams {
	return kernel.SampleParams{Temperature: temp, TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1}
}

func randomLogits(r *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * scale)
	}
	return x
}

func sampleOne(t *testing.T, x []float32, p kernel.SampleParams) int32 {
	t.Helper()
	var res kernel.SampleResult
	b := &kernel.SampleBatch{Rows: []kernel.SampleParams{p}}
	require.NoError(t, Sample(x, len(x), b, &res))
	return res.Tokens[0]
}

// keepSet runs the implementation's filters and returns the kept ids sorted.
func keepSet(t *testing.T, z []float32, p kernel.SampleParams) []int32 {
	t.Helper()
	var w worker
	cands, _, err := w.keep(z, &p)
	require.NoError(t, err)
	ids := make([]int32, len(cands))
	for i, c := range cands {
		ids[i] = c.id
	}
	slices.Sort(ids)
	return ids
}

func logs(probs ...float64) []float32 {
	x := make([]float32, len(probs))
	for i, p := range probs {
		x[i] = float32(math.Log(p))
	}
	return x
}

func TestGreedyEqualsArgmax(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, temp := range []float32{0, 1e-6, 9e-6} {
		for trial := range 50 {
			x := randomLogits(r, 1+r.IntN(3000), 3)
			p := params(temp)
			p.Seed = uint64(trial)
			want := refArgmax(refProcessed(x, p, nil, nil, nil))
			assert.Equal(t, want, sampleOne(t, x, p), "temp %v trial %d", temp, trial)
		}
	}
}

func TestGreedyTiesGoToLowestID(t *testing.T) {
	tests := []struct {
		x    []float32
		want int32
	}{
		{[]float32{1, 5, 5, 2}, 1},
		{[]float32{7, 7, 7}, 0},
		{[]float32{float32(math.Inf(-1)), 0, 0}, 1},
		{[]float32{-3}, 0},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, sampleOne(t, tc.x, params(0)), "%v", tc.x)
	}
}

func TestTemperatureAtThresholdSamples(t *testing.T) {
	// At T = 1e-5 the row is no longer greedy: with two equal logits both
	// tokens must come out over a few seeds.
	seen := map[int32]bool{}
	for seed := range uint64(64) {
		p := params(GreedyEpsilon)
		p.Seed = seed
		seen[sampleOne(t, []float32{2, 2}, p)] = true
	}
	assert.Len(t, seen, 2)
}

func TestMinPKeepSet(t *testing.T) {
	x := logs(0.5, 0.25, 0.15, 0.1)
	tests := []struct {
		temp, minP float32
		want       []int32
	}{
		{1, 0, []int32{0, 1, 2, 3}},
		{1, 0.25, []int32{0, 1, 2}}, // threshold p >= 0.125
		{1, 0.45, []int32{0, 1}},    // p >= 0.225
		{1, 0.6, []int32{0}},        // p >= 0.3
		{1, 1, []int32{0}},
		// T = 2: p ∝ sqrt(p): ratios to max 1, .707, .548, .447
		{2, 0.6, []int32{0, 1}},
		{2, 0.5, []int32{0, 1, 2}},
		{2, 0.4, []int32{0, 1, 2, 3}},
		// T = 0.5: p ∝ p²: ratios 1, .25, .09, .04
		{0.5, 0.2, []int32{0, 1}},
	}
	for _, tc := range tests {
		p := params(tc.temp)
		p.MinP = tc.minP
		assert.Equal(t, tc.want, keepSet(t, x, p), "T=%v min_p=%v", tc.temp, tc.minP)
	}
}

func TestTopKKeepSet(t *testing.T) {
	tests := []struct {
		x    []float32
		k    int
		want []int32
	}{
		{[]float32{1, 3, 2, 3, 0}, 1, []int32{1, 3}}, // tie at the k-th value: both kept
		{[]float32{1, 3, 2, 4, 0}, 1, []int32{3}},
		{[]float32{1, 3, 2, 4, 0}, 2, []int32{1, 3}},
		{[]float32{1, 3, 2, 4, 0}, 3, []int32{1, 2, 3}},
		{[]float32{1, 3, 2, 2, 0}, 2, []int32{1, 2, 3}}, // tie kept
		{[]float32{1, 3, 2, 4, 0}, 5, []int32{0, 1, 2, 3, 4}},
		{[]float32{1, 3, 2, 4, 0}, 9, []int32{0, 1, 2, 3, 4}},
		{[]float32{1, 3, 2, 4, 0}, 0, []int32{0, 1, 2, 3, 4}},
		{[]float32{1, 3, 2, 4, 0}, -1, []int32{0, 1, 2, 3, 4}},
		// masked tokens do not count towards k
		{[]float32{float32(math.Inf(-1)), 3, float32(math.Inf(-1)), 4}, 3, []int32{1, 3}},
	}
	for _, tc := range tests {
		p := params(1)
		p.TopK = tc.k
		assert.Equal(t, tc.want, keepSet(t, tc.x, p), "%v k=%d", tc.x, tc.k)
	}
}

func TestTopKLargeUsesSameSemanticsAsHeap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := randomLogits(r, 5000, 2)
	// Repeated values so that ties cross the k-th position.
	for i := range x {
		x[i] = float32(math.Round(float64(x[i])*8) / 8)
	}
	for _, k := range []int{1, 17, heapSelectMaxK, heapSelectMaxK + 1, 900, 4999} {
		p := params(1)
		p.TopK = k
		ref := refSample(refProcessed(x, p, nil, nil, nil), p)
		want := slices.Clone(ref.kept)
		slices.Sort(want)
		assert.Equal(t, want, keepSet(t, x, p), "k=%d", k)
	}
}

func TestTopPKeepSet(t *testing.T) {
	x := logs(0.5, 0.25, 0.15, 0.1)
	tests := []struct {
		topP float32
		want []int32
	}{
		{1, []int32{0, 1, 2, 3}},
		{0.95, []int32{0, 1, 2, 3}}, // before token 3: 0.90 < 0.95
		{0.85, []int32{0, 1, 2}},    // before token 3: 0.90
		{0.76, []int32{0, 1, 2}},    // before token 2: 0.75 < 0.76
		{0.74, []int32{0, 1}},
		{0.6, []int32{0, 1}},
		{0.4, []int32{0}},
		{0.01, []int32{0}},
	}
	for _, tc := range tests {
		p := params(1)
		p.TopP = tc.topP
		assert.Equal(t, tc.want, keepSet(t, x, p), "top_p=%v", tc.topP)
	}
	// Ties are ordered by id: three equal tokens and a small one, top_p 0.5
	// keeps ids 0 and 1 (weight before id 1 is 1/3.135 < 0.5, before id 2
	// is 2/3.135 >= 0.5).
	p := params(1)
	p.TopP = 0.5
	assert.Equal(t, []int32{0, 1}, keepSet(t, []float32{2, 2, 2, 0}, p))
	assert.Equal(t, []int32{1, 3}, keepSet(t, []float32{0, 2, 0, 2}, p))
}

func TestCombinedFiltersFollowVLLMOrder(t *testing.T) {
	// probs .4 .2 .15 .1 .08 .07; min_p .2 drops p < .08 (id 5); top_k 4
	// keeps ids 0-3 (mass .85); top_p .7 over the renormalised top-4
	// (.47 .235 .176 .118) keeps ids 0, 1 (before id 2: .706 >= .7).
	x := logs(0.4, 0.2, 0.15, 0.1, 0.08, 0.07)
	p := params(1)
	p.MinP, p.TopK, p.TopP = 0.2, 4, 0.7
	assert.Equal(t, []int32{0, 1}, keepSet(t, x, p))
	p.TopP = 0.71
	assert.Equal(t, []int32{0, 1, 2}, keepSet(t, x, p))
}

func TestPenaltiesHandChecked(t *testing.T) {
	inf := float32(math.Inf(-1))
	x := []float32{2, -1, 0.5, 3, -2, 0}
	tests := []struct {
		name           string
		rep, freq, pre float32
		prompt, output []int32
		bias           map[int32]float32
		want           []float32
	}{
		{"none", 1, 0, 0, []int32{0}, []int32{1}, nil, x},
		{"repetition divides positive, multiplies negative and zero",
			2, 0, 0, []int32{0, 5}, []int32{1}, nil, []float32{1, -2, 0.5, 3, -2, 0}},
		{"frequency counts output occurrences only",
			1, 0.5, 0, []int32{0}, []int32{1, 1, 3}, nil, []float32{2, -2, 0.5, 2.5, -2, 0}},
		{"presence once per output token",
			1, 0, 0.25, []int32{0}, []int32{1, 1, 3}, nil, []float32{2, -1.25, 0.5, 2.75, -2, 0}},
		{"all three in vLLM's order",
			2, 0.5, 0.25, []int32{0}, []int32{1, 1, 3}, nil, []float32{1, -3.25, 0.5, 0.75, -2, 0}},
		{"bias comes before penalties",
			2, 0, 0, []int32{0}, nil, map[int32]float32{0: -3, 2: 1, 4: inf}, []float32{-2, -1, 1.5, 3, inf, 0}},
		{"negative penalties reward",
			1, -0.5, -1, nil, []int32{4}, nil, []float32{2, -1, 0.5, 3, -0.5, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := params(1)
			p.RepetitionPenalty, p.FrequencyPenalty, p.PresencePenalty = tc.rep, tc.freq, tc.pre
			var w worker
			got := slices.Clone(w.processedLogits(x, &p, tc.prompt, tc.output, tc.bias))
			assert.Equal(t, tc.want, got)
			ref := refProcessed(x, p, tc.prompt, tc.output, tc.bias)
			for i := range ref {
				assert.Equal(t, float32(ref[i]), got[i], "token %d vs float64 reference", i)
			}
		})
	}
}

func TestPenaltiesRandomVsReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var w worker
	for trial := range 200 {
		vocab := 1 + r.IntN(300)
		x := randomLogits(r, vocab, 4)
		p := params(1)
		p.RepetitionPenalty = float32(0.5 + 1.5*r.Float64())
		p.FrequencyPenalty = float32(4*r.Float64() - 2)
		p.PresencePenalty = float32(4*r.Float64() - 2)
		prompt := randomTokens(r, r.IntN(40), vocab)
		output := randomTokens(r, r.IntN(40), vocab)
		bias := map[int32]float32{}
		for range r.IntN(5) {
			bias[int32(r.IntN(vocab))] = float32(r.NormFloat64() * 5)
		}
		got := w.processedLogits(x, &p, prompt, output, bias)
		ref := refProcessed(x, p, prompt, output, bias)
		for i := range ref {
			require.Equal(t, float32(ref[i]), got[i], "trial %d token %d", trial, i)
		}
		require.NotSame(t, &x[0], &got[0], "input must not be modified in place")
	}
}

func randomTokens(r *rand.Rand, n, vocab int) []int32 {
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(r.IntN(vocab))
	}
	return t
}

// randomParams draws sampling parameters that exercise every filter.
func randomParams(r *rand.Rand, vocab int) kernel.SampleParams {
	p := params(float32(0.05 + 2*r.Float64()))
	if r.IntN(3) == 0 {
		p.MinP = float32(r.Float64() * 0.3)
	}
	switch r.IntN(4) {
	case 0:
		p.TopK = 1 + r.IntN(60)
	case 1:
		p.TopK = 1 + r.IntN(vocab)
	}
	if r.IntN(2) == 0 {
		p.TopP = float32(0.05 + 0.95*r.Float64())
	}
	p.Seed = r.Uint64()
	p.Offset = uint64(r.IntN(1000))
	return p
}

func TestDrawMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	checked := 0
	for trial := range 600 {
		vocab := []int{2, 7, 50, 1000, 20000}[trial%5]
		x := randomLogits(r, vocab, 1+3*r.Float64())
		p := randomParams(r, vocab)
		ref := refSample(refProcessed(x, p, nil, nil, nil), p)
		if ref.margin < 1e-9 {
			continue // within rounding of a boundary: either answer is right
		}
		checked++
		got := sampleOne(t, x, p)
		require.Equal(t, ref.token, got, "trial %d vocab %d params %+v", trial, vocab, p)
	}
	assert.Greater(t, checked, 550)
}

func TestKeepSetMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for trial := range 300 {
		vocab := []int{3, 64, 3000}[trial%3]
		x := randomLogits(r, vocab, 2)
		p := randomParams(r, vocab)
		ref := refSample(refProcessed(x, p, nil, nil, nil), p)
		if ref.margin < 1e-9 {
			continue
		}
		want := slices.Clone(ref.kept)
		slices.Sort(want)
		require.Equal(t, want, keepSet(t, x, p), "trial %d params %+v", trial, p)
	}
}

// TestDistribution draws many tokens with fixed seeds and checks the
// empirical frequencies against the reference probabilities (5 standard
// deviations; deterministic because the seeds are fixed).
func TestDistribution(t *testing.T) {
	x := logs(0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.05, 0.03, 0.02)
	tests := []kernel.SampleParams{
		params(1),
		{Temperature: 0.7, TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1},
		{Temperature: 1.5, TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1},
		{Temperature: 1, TopP: 0.8, RepetitionPenalty: 1, NumLogprobs: -1},
		{Temperature: 1, TopP: 1, TopK: 3, RepetitionPenalty: 1, NumLogprobs: -1},
		{Temperature: 0.9, TopP: 0.9, TopK: 6, MinP: 0.2, RepetitionPenalty: 1, NumLogprobs: -1},
	}
	const n = 40000
	for ti, p := range tests {
		t.Run(fmt.Sprintf("case%d", ti), func(t *testing.T) {
			ref := refSample(refProcessed(x, p, nil, nil, nil), p)
			counts := make([]int, len(x))
			rows := make([]kernel.SampleParams, 0, 100)
			var res kernel.SampleResult
			for start := 0; start < n; start += 100 {
				rows = rows[:0]
				for o := start; o < start+100; o++ {
					q := p
					q.Seed = 42 + uint64(ti)
					q.Offset = uint64(o)
					rows = append(rows, q)
				}
				logits := slices.Repeat(x, len(rows))
				require.NoError(t, Sample(logits, len(x), &kernel.SampleBatch{Rows: rows}, &res))
				for _, tok := range res.Tokens {
					counts[tok]++
				}
			}
			prob := make([]float64, len(x))
			for j, id := range ref.kept {
				prob[id] = ref.probs[j]
			}
			for id, c := range counts {
				f := float64(c) / n
				sd := math.Sqrt(prob[id] * (1 - prob[id]) / n)
				if prob[id] == 0 {
					assert.Zero(t, c, "token %d is outside the keep set", id)
					continue
				}
				assert.InDelta(t, prob[id], f, 5*sd+1e-9, "token %d", id)
			}
		})
	}
}

// TestBatchInvariance checks that a row's token and logprobs do not
// depend on the other rows, its position, or the number of workers.
func TestBatchInvariance(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const vocab, rows = 3000, 12
	type row struct {
		x      []float32
		p      kernel.SampleParams
		prompt []int32
		output []int32
		bias   map[int32]float32
	}
	var all []row
	for i := range rows {
		p := randomParams(r, vocab)
		if i%4 == 0 {
			p.Temperature = 0
		}
		p.NumLogprobs = []int{-1, 0, 5}[i%3]
		p.RepetitionPenalty = 1.3
		p.FrequencyPenalty = 0.2
		all = append(all, row{
			x: randomLogits(r, vocab, 3), p: p,
			prompt: randomTokens(r, 20, vocab), output: randomTokens(r, 10, vocab),
			bias: map[int32]float32{int32(r.IntN(vocab)): -2},
		})
	}
	run := func(s *Sampler, order []int) kernel.SampleResult {
		var b kernel.SampleBatch
		var logits []float32
		for _, i := range order {
			logits = append(logits, all[i].x...)
			b.Rows = append(b.Rows, all[i].p)
			b.PromptTokens = append(b.PromptTokens, all[i].prompt)
			b.OutputTokens = append(b.OutputTokens, all[i].output)
			b.LogitBias = append(b.LogitBias, all[i].bias)
		}
		var res kernel.SampleResult
		require.NoError(t, s.Sample(logits, vocab, &b, &res))
		return res
	}
	alone := make([]kernel.SampleResult, rows)
	for i := range rows {
		alone[i] = run(&Sampler{Workers: 1}, []int{i})
	}
	orders := [][]int{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
		{11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
		{5, 0, 7, 3, 11, 2},
		{4, 4, 4, 9},
	}
	for _, workers := range []int{1, 3, 8} {
		for _, order := range orders {
			res := run(&Sampler{Workers: workers}, order)
			for pos, i := range order {
				a := alone[i]
				assert.Equal(t, a.Tokens[0], res.Tokens[pos], "row %d at %d workers %d", i, pos, workers)
				assert.Equal(t, a.Logprobs[0], res.Logprobs[pos])
				assert.Equal(t, a.Ranks[0], res.Ranks[pos])
				assert.Equal(t, a.TopIDs[0], res.TopIDs[pos])
				assert.Equal(t, a.TopLogprobs[0], res.TopLogprobs[pos])
			}
		}
	}
}

func TestSeedAndOffsetDetermineTheDraw(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	x := randomLogits(r, 500, 1)
	p := params(1)
	p.Seed, p.Offset = 99, 7
	first := sampleOne(t, x, p)
	for range 5 {
		assert.Equal(t, first, sampleOne(t, x, p))
	}
	distinct := map[int32]bool{}
	for o := range uint64(50) {
		p.Offset = o
		distinct[sampleOne(t, x, p)] = true
	}
	assert.Greater(t, len(distinct), 10, "different offsets give different draws")
}

func TestLogprobsAgainstFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for trial := range 60 {
		vocab := 1 + r.IntN(5000)
		x := randomLogits(r, vocab, 1+5*r.Float64())
		if trial%3 == 0 { // coarse values: many ties
			for i := range x {
				x[i] = float32(math.Round(float64(x[i])))
			}
		}
		p := randomParams(r, vocab)
		p.NumLogprobs = r.IntN(min(vocab, 20) + 1)
		p.RepetitionPenalty = 1.5
		out := randomTokens(r, 5, vocab)
		bias := map[int32]float32{int32(r.IntN(vocab)): 5}
		var res kernel.SampleResult
		b := &kernel.SampleBatch{Rows: []kernel.SampleParams{p}, OutputTokens: [][]int32{out}, LogitBias: []map[int32]float32{bias}}
		require.NoError(t, Sample(x, vocab, b, &res))

		lp := refLogSoftmax(x) // raw: before bias, penalties and temperature
		tok := res.Tokens[0]
		assert.InDelta(t, lp[tok], float64(res.Logprobs[0]), 1e-5)
		rank := 0
		for _, v := range lp {
			if v >= lp[tok] {
				rank++
			}
		}
		assert.Equal(t, rank, res.Ranks[0])
		if p.NumLogprobs == 0 {
			assert.Empty(t, res.TopIDs[0])
		} else {
			assert.Equal(t, refTop(lp, p.NumLogprobs), res.TopIDs[0])
		}
		require.Len(t, res.TopLogprobs[0], p.NumLogprobs)
		for j, id := range res.TopIDs[0] {
			assert.InDelta(t, lp[id], float64(res.TopLogprobs[0][j]), 1e-5)
		}
	}
}

func TestLogprobsHandChecked(t *testing.T) {
	x := []float32{1, 3, 3, 0}
	p := params(0)
	p.NumLogprobs = 3
	var res kernel.SampleResult
	require.NoError(t, Sample(x, 4, &kernel.SampleBatch{Rows: []kernel.SampleParams{p}}, &res))
	lse := math.Log(math.Exp(1) + 2*math.Exp(3) + 1)
	assert.Equal(t, int32(1), res.Tokens[0])
	assert.InDelta(t, 3-lse, res.Logprobs[0], 1e-6)
	assert.Equal(t, 2, res.Ranks[0], "vLLM counts tokens with logprob >= the sampled one")
	assert.Equal(t, []int32{1, 2, 0}, res.TopIDs[0])
	assert.InDeltaSlice(t, []float64{3 - lse, 3 - lse, 1 - lse}, toF64(res.TopLogprobs[0]), 1e-6)

	// Rows without logprobs leave zeros and empty tops.
	p.NumLogprobs = -1
	require.NoError(t, Sample(x, 4, &kernel.SampleBatch{Rows: []kernel.SampleParams{p}}, &res))
	assert.Zero(t, res.Ranks[0])
	assert.Empty(t, res.TopIDs[0])
}

func toF64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func TestMinTokensMaskViaBias(t *testing.T) {
	inf := float32(math.Inf(-1))
	x := []float32{10, 0, 0}
	p := params(0)
	b := &kernel.SampleBatch{Rows: []kernel.SampleParams{p}, LogitBias: []map[int32]float32{{0: inf}}}
	var res kernel.SampleResult
	require.NoError(t, Sample(x, 3, b, &res))
	assert.Equal(t, int32(1), res.Tokens[0])
	b.Rows[0].Temperature = 1
	for o := range uint64(100) {
		b.Rows[0].Offset = o
		require.NoError(t, Sample(x, 3, b, &res))
		assert.NotEqual(t, int32(0), res.Tokens[0])
	}
}

func TestBadInput(t *testing.T) {
	ok := params(1)
	one := []kernel.SampleParams{ok}
	with := func(f func(p *kernel.SampleParams)) []kernel.SampleParams {
		p := ok
		f(&p)
		return []kernel.SampleParams{p}
	}
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	tests := []struct {
		name   string
		logits []float32
		vocab  int
		b      *kernel.SampleBatch
		want   error
	}{
		{"nil batch", []float32{1}, 1, nil, ErrInvalid},
		{"zero vocab", nil, 0, &kernel.SampleBatch{}, ErrInvalid},
		{"short logits", []float32{1}, 2, &kernel.SampleBatch{Rows: one}, ErrInvalid},
		{"long logits", []float32{1, 2, 3}, 2, &kernel.SampleBatch{Rows: one}, ErrInvalid},
		{"logits without rows", []float32{1, 2}, 2, &kernel.SampleBatch{}, ErrInvalid},
		{"negative temperature", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.Temperature = -1 })}, ErrInvalid},
		{"NaN temperature", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.Temperature = nan })}, ErrInvalid},
		{"top_p 0", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.TopP = 0 })}, ErrInvalid},
		{"top_p > 1", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.TopP = 1.5 })}, ErrInvalid},
		{"min_p < 0", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.MinP = -0.1 })}, ErrInvalid},
		{"min_p NaN", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.MinP = nan })}, ErrInvalid},
		{"repetition 0", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.RepetitionPenalty = 0 })}, ErrInvalid},
		{"presence Inf", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.PresencePenalty = inf })}, ErrInvalid},
		{"frequency NaN", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.FrequencyPenalty = nan })}, ErrInvalid},
		{"too many logprobs", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.NumLogprobs = 3 })}, ErrInvalid},
		{"prompt rows mismatch", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: one, PromptTokens: [][]int32{{0}, {1}}}, ErrInvalid},
		{"prompt token out of range", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: one, PromptTokens: [][]int32{{2}}}, ErrInvalid},
		{"output token negative", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: one, OutputTokens: [][]int32{{-1}}}, ErrInvalid},
		{"bias rows mismatch", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: one, LogitBias: []map[int32]float32{}}, ErrInvalid},
		{"bias id out of range", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: one, LogitBias: []map[int32]float32{{5: 1}}}, ErrInvalid},
		{"bias NaN", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: one, LogitBias: []map[int32]float32{{0: nan}}}, ErrInvalid},
		{"bias +Inf", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: one, LogitBias: []map[int32]float32{{0: inf}}}, ErrInvalid},
		{"NaN logit", []float32{1, nan}, 2, &kernel.SampleBatch{Rows: one}, ErrNonFinite},
		{"NaN logit greedy", []float32{nan, 1}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.Temperature = 0 })}, ErrNonFinite},
		{"+Inf logit", []float32{1, inf}, 2, &kernel.SampleBatch{Rows: one}, ErrNonFinite},
		{"NaN logit top_k", []float32{1, 2, nan, 0}, 4, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.TopK = 2 })}, ErrNonFinite},
		{"NaN logit filling top_k", []float32{nan, 2, 1, 0}, 4, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.TopK = 2 })}, ErrNonFinite},
		{"+Inf logit top_k", []float32{1, 2, inf, 0}, 4, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.TopK = 2 })}, ErrNonFinite},
		{"all masked top_k", []float32{1, 2, 3}, 3, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.TopK = 2 }), LogitBias: []map[int32]float32{{0: -inf, 1: -inf, 2: -inf}}}, ErrAllMasked},
		{"NaN raw logit under a mask, logprobs", []float32{nan, 1}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.NumLogprobs = 0 }), LogitBias: []map[int32]float32{{0: -inf}}}, ErrNonFinite},
		{"all masked", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: one, LogitBias: []map[int32]float32{{0: -inf, 1: -inf}}}, ErrAllMasked},
		{"all masked greedy", []float32{1, 2}, 2, &kernel.SampleBatch{Rows: with(func(p *kernel.SampleParams) { p.Temperature = 0 }), LogitBias: []map[int32]float32{{0: -inf, 1: -inf}}}, ErrAllMasked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var res kernel.SampleResult
			err := Sample(tc.logits, tc.vocab, tc.b, &res)
			require.Error(t, err)
			assert.True(t, errors.Is(err, tc.want), "got %v", err)
		})
	}
	assert.ErrorIs(t, Sample([]float32{1}, 1, &kernel.SampleBatch{Rows: one}, nil), ErrInvalid)
}

func TestEmptyBatch(t *testing.T) {
	res := kernel.SampleResult{Tokens: []int32{5, 6}}
	require.NoError(t, Sample(nil, 10, &kernel.SampleBatch{}, &res))
	assert.Empty(t, res.Tokens)
}

func TestResultReusesCapacityWithoutAllocating(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r := rand.New(rand.NewPCG(17, 18))
	const vocab = 2000
	rows := []kernel.SampleParams{params(0), params(0.8), params(1), params(1)}
	rows[1].TopK, rows[1].TopP, rows[1].NumLogprobs = 40, 0.9, 5
	rows[2].MinP, rows[2].NumLogprobs = 0.05, 0
	rows[3].RepetitionPenalty, rows[3].PresencePenalty, rows[3].TopP = 1.2, 0.5, 0.95
	b := &kernel.SampleBatch{
		Rows:         rows,
		PromptTokens: [][]int32{nil, {1, 2}, nil, {3, 4, 5}},
		OutputTokens: [][]int32{nil, nil, {7}, {8, 8}},
		LogitBias:    []map[int32]float32{nil, {9: -1}, nil, {10: float32(math.Inf(-1))}},
	}
	logits := randomLogits(r, vocab*len(rows), 2)
	s := &Sampler{Workers: 1}
	var res kernel.SampleResult
	require.NoError(t, s.Sample(logits, vocab, b, &res))
	allocs := testing.AllocsPerRun(50, func() {
		for i := range b.Rows {
			b.Rows[i].Offset++
		}
		if err := s.Sample(logits, vocab, b, &res); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

// TestTemperatureScaling compares the implementation's normalised weights
// with a float64 softmax of z/T.
func TestTemperatureScaling(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	x := randomLogits(r, 257, 3)
	for _, temp := range []float32{0.05, 0.3, 1, 1.7, 10} {
		p := params(temp)
		var w worker
		cands, total, err := w.keep(x, &p)
		require.NoError(t, err)
		require.Len(t, cands, len(x))
		m := math.Inf(-1)
		for _, v := range x {
			m = math.Max(m, float64(v)/float64(temp))
		}
		s := 0.0
		for _, v := range x {
			s += math.Exp(float64(v)/float64(temp) - m)
		}
		for _, c := range cands {
			want := math.Exp(float64(c.z)/float64(temp)-m) / s
			assert.InDelta(t, want, c.w/total, 1e-12+1e-9*want, "T %v token %d", temp, c.id)
		}
	}
}
