package kerneltest

import (
	"math"
	"sort"

	"github.com/vserve/vserve/runtime/kernel"
)

// defaultParams are neutral sampling parameters (greedy, no filters).
func defaultParams() kernel.SampleParams {
	return kernel.SampleParams{TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1}
}

// sampleRows uploads logits [rows×vocab] and samples them.
func (h *harness) sampleRows(logits []float32, vocab int, b *kernel.SampleBatch) *kernel.SampleResult {
	h.tb.Helper()
	lb, _ := h.upload(kernel.F32, logits)
	res := &kernel.SampleResult{}
	h.ok("Sample", h.be.Sample(lb, vocab, b, res))
	if len(res.Tokens) != len(b.Rows) {
		h.tb.Fatalf("Sample returned %d tokens for %d rows", len(res.Tokens), len(b.Rows))
	}
	return res
}

func testSample(h *harness) {
	sampleGreedyAndLogprobs(h)
	samplePenaltiesAndBias(h)
	sampleFiltersToArgmax(h)
	sampleSeededBatchInvariance(h)
	sampleDistribution(h)
}

// logSoftmax64 is the float64 reference of raw logprobs.
func logSoftmax64(x []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = max(mx, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - mx)
	}
	lse := mx + math.Log(s)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) - lse
	}
	return out
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

func sampleGreedyAndLogprobs(h *harness) {
	const vocab = 1000
	nl := []int{-1, 0, 1, 5, 20}
	logits := h.normals(len(nl)*vocab, 3)
	b := &kernel.SampleBatch{}
	for _, n := range nl {
		p := defaultParams()
		p.NumLogprobs = n
		b.Rows = append(b.Rows, p)
	}
	res := h.sampleRows(logits, vocab, b)
	for i, n := range nl {
		row := logits[i*vocab : (i+1)*vocab]
		tok := int(res.Tokens[i])
		if want := argmax(row); tok != want {
			h.tb.Errorf("greedy row %d: token %d, want argmax %d", i, tok, want)
			continue
		}
		if n < 0 {
			continue
		}
		lp := logSoftmax64(row)
		if d := math.Abs(float64(res.Logprobs[i]) - lp[tok]); d > 1e-4 {
			h.tb.Errorf("row %d: logprob %v, want %v", i, res.Logprobs[i], lp[tok])
		}
		if res.Ranks[i] != 1 {
			h.tb.Errorf("row %d: rank of the argmax %d, want 1", i, res.Ranks[i])
		}
		checkTop(h, i, row, lp, n, res)
	}
}

// checkTop compares row i's top logprobs with a full sort.
func checkTop(h *harness, i int, row []float32, lp []float64, n int, res *kernel.SampleResult) {
	ids := make([]int, len(row))
	for j := range ids {
		ids[j] = j
	}
	sort.SliceStable(ids, func(a, b int) bool { return row[ids[a]] > row[ids[b]] })
	if len(res.TopIDs[i]) != n || len(res.TopLogprobs[i]) != n {
		h.tb.Errorf("row %d: %d top ids and %d top logprobs, want %d", i, len(res.TopIDs[i]), len(res.TopLogprobs[i]), n)
		return
	}
	for r := range n {
		if int(res.TopIDs[i][r]) != ids[r] {
			h.tb.Errorf("row %d: top[%d] id %d, want %d", i, r, res.TopIDs[i][r], ids[r])
		}
		if d := math.Abs(float64(res.TopLogprobs[i][r]) - lp[ids[r]]); d > 1e-4 {
			h.tb.Errorf("row %d: top[%d] logprob %v, want %v", i, r, res.TopLogprobs[i][r], lp[ids[r]])
		}
	}
}

// samplePenaltiesAndBias uses logits where token 1 leads token 2 by one;
// each case's adjustment decides the greedy winner, and the logprob stays
// the raw one.
func samplePenaltiesAndBias(h *harness) {
	const vocab = 50
	row := make([]float32, vocab)
	for j := range row {
		row[j] = -1 - float32(j)/vocab
	}
	row[1], row[2] = 5, 4
	cases := []struct {
		name   string
		adjust func(p *kernel.SampleParams)
		prompt []int32
		output []int32
		bias   map[int32]float32
		want   int32
	}{
		{"none", nil, nil, nil, nil, 1},
		{"repetition on prompt", func(p *kernel.SampleParams) { p.RepetitionPenalty = 2 }, []int32{1}, nil, nil, 2},
		{"repetition on output", func(p *kernel.SampleParams) { p.RepetitionPenalty = 2 }, nil, []int32{1}, nil, 2},
		{"repetition unseen", func(p *kernel.SampleParams) { p.RepetitionPenalty = 2 }, []int32{7}, nil, nil, 1},
		{"presence", func(p *kernel.SampleParams) { p.PresencePenalty = 1.5 }, nil, []int32{1}, nil, 2},
		{"presence ignores prompt", func(p *kernel.SampleParams) { p.PresencePenalty = 1.5 }, []int32{1}, nil, nil, 1},
		{"frequency counts", func(p *kernel.SampleParams) { p.FrequencyPenalty = 0.6 }, nil, []int32{1, 1}, nil, 2},
		{"frequency once", func(p *kernel.SampleParams) { p.FrequencyPenalty = 0.6 }, nil, []int32{1}, nil, 1},
		{"logit bias", nil, nil, nil, map[int32]float32{3: 7}, 3},
		{"masked", nil, nil, nil, map[int32]float32{1: float32(math.Inf(-1))}, 2},
	}
	b := &kernel.SampleBatch{}
	var logits []float32
	for _, c := range cases {
		p := defaultParams()
		p.NumLogprobs = 0
		if c.adjust != nil {
			c.adjust(&p)
		}
		b.Rows = append(b.Rows, p)
		b.PromptTokens = append(b.PromptTokens, c.prompt)
		b.OutputTokens = append(b.OutputTokens, c.output)
		b.LogitBias = append(b.LogitBias, c.bias)
		logits = append(logits, row...)
	}
	res := h.sampleRows(logits, vocab, b)
	lp := logSoftmax64(row)
	for i, c := range cases {
		if res.Tokens[i] != c.want {
			h.tb.Errorf("%s: token %d, want %d", c.name, res.Tokens[i], c.want)
		}
		if d := math.Abs(float64(res.Logprobs[i]) - lp[res.Tokens[i]]); d > 1e-4 {
			h.tb.Errorf("%s: logprob %v, want the raw %v", c.name, res.Logprobs[i], lp[res.Tokens[i]])
		}
		rank := 0
		for _, v := range row {
			if v >= row[res.Tokens[i]] {
				rank++
			}
		}
		if res.Ranks[i] != rank {
			h.tb.Errorf("%s: rank %d, want %d", c.name, res.Ranks[i], rank)
		}
	}
}

// sampleFiltersToArgmax: random sampling whose filters leave only the
// most likely token must return it for any seed.
func sampleFiltersToArgmax(h *harness) {
	const vocab = 300
	filters := []func(*kernel.SampleParams){
		func(p *kernel.SampleParams) { p.TopK = 1 },
		func(p *kernel.SampleParams) { p.TopP = 1e-6 },
		func(p *kernel.SampleParams) { p.MinP = 1 },
	}
	b := &kernel.SampleBatch{}
	var logits []float32
	for i := range 12 {
		p := defaultParams()
		p.Temperature = 0.7 + float32(i)/10
		p.Seed = uint64(1000 + i)
		p.Offset = uint64(i)
		filters[i%len(filters)](&p)
		b.Rows = append(b.Rows, p)
		logits = append(logits, h.normals(vocab, 1)...)
	}
	res := h.sampleRows(logits, vocab, b)
	for i := range b.Rows {
		if want := argmax(logits[i*vocab : (i+1)*vocab]); int(res.Tokens[i]) != want {
			h.tb.Errorf("filter row %d: token %d, want the argmax %d", i, res.Tokens[i], want)
		}
	}
}

// sampleSeededBatchInvariance: a seeded row draws the same token alone,
// repeated, and among other rows in any order.
func sampleSeededBatchInvariance(h *harness) {
	const vocab = 2000
	type row struct {
		p      kernel.SampleParams
		logits []float32
	}
	var rows []row
	for i := range 8 {
		p := defaultParams()
		p.Temperature = 1
		p.Seed = uint64(7 + i*1000003)
		p.Offset = uint64(3 * i)
		switch i % 4 {
		case 1:
			p.TopK = 50
		case 2:
			p.TopP = 0.9
		case 3:
			p.MinP = 0.05
			p.TopK = 200
			p.TopP = 0.95
		}
		rows = append(rows, row{p, h.normals(vocab, 1)})
	}
	alone := make([]int32, len(rows))
	for i, r := range rows {
		res := h.sampleRows(r.logits, vocab, &kernel.SampleBatch{Rows: []kernel.SampleParams{r.p}})
		alone[i] = res.Tokens[0]
	}
	for _, order := range [][]int{{0, 1, 2, 3, 4, 5, 6, 7}, {7, 5, 3, 1, 6, 4, 2, 0}, {2, 2, 6}} {
		b := &kernel.SampleBatch{}
		var logits []float32
		for _, i := range order {
			b.Rows = append(b.Rows, rows[i].p)
			logits = append(logits, rows[i].logits...)
		}
		res := h.sampleRows(logits, vocab, b)
		for j, i := range order {
			if res.Tokens[j] != alone[i] {
				h.tb.Errorf("batch %v: row %d drew %d, alone it drew %d", order, i, res.Tokens[j], alone[i])
			}
		}
	}
	distinct := map[int32]bool{}
	for _, t := range alone {
		distinct[t] = true
	}
	if len(distinct) < 2 {
		h.tb.Errorf("8 seeded rows over a vocab of %d all drew %v", vocab, alone)
	}
}

// sampleDistribution: draws over many offsets follow softmax(x/T).
func sampleDistribution(h *harness) {
	probs := []float64{0.1, 0.2, 0.3, 0.4}
	logits := make([]float32, len(probs))
	for i, p := range probs {
		logits[i] = float32(math.Log(p))
	}
	for _, temp := range []float32{1, 0.5} {
		want := make([]float64, len(probs))
		var z float64
		for i, p := range probs {
			want[i] = math.Pow(p, 1/float64(temp))
			z += want[i]
		}
		// 1000 draws: a 5σ band of ±0.08 at most, tight enough to tell T = 1
		// from T = 0.5 (frequencies differ by 0.07 to 0.13) and cheap for
		// emulated backends, which run one row per thread block.
		const draws = 1000
		b := &kernel.SampleBatch{}
		var all []float32
		for d := range draws {
			p := defaultParams()
			p.Temperature = temp
			p.Seed = 42
			p.Offset = uint64(d)
			b.Rows = append(b.Rows, p)
			all = append(all, logits...)
		}
		res := h.sampleRows(all, len(probs), b)
		counts := make([]float64, len(probs))
		for _, t := range res.Tokens {
			counts[t]++
		}
		for i := range probs {
			got, w := counts[i]/draws, want[i]/z
			// 5 standard deviations of a binomial proportion.
			if sd := math.Sqrt(w * (1 - w) / draws); math.Abs(got-w) > 5*sd {
				h.tb.Errorf("temperature %v: token %d frequency %.4f, want %.4f", temp, i, got, w)
			}
		}
	}
}
