package sample

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vserve/vserve/internal/cputime"
	"github.com/vserve/vserve/runtime/kernel"
)

// benchModes are the parameter sets measured; greedy and topk_topp are the
// headline figures, the others show the costlier paths.
var benchModes = []struct {
	name   string
	params func(row int) kernel.SampleParams
}{
	{"greedy", func(int) kernel.SampleParams { return params(0) }},
	{"topk_topp", func(row int) kernel.SampleParams {
		p := params(0.8)
		p.TopK, p.TopP, p.Seed = 50, 0.9, uint64(row)
		return p
	}},
	{"topp", func(row int) kernel.SampleParams {
		p := params(0.8)
		p.TopP, p.Seed = 0.9, uint64(row)
		return p
	}},
	{"plain", func(row int) kernel.SampleParams {
		p := params(1)
		p.Seed = uint64(row)
		return p
	}},
	{"minp", func(row int) kernel.SampleParams {
		p := params(1)
		p.MinP, p.Seed = 0.05, uint64(row)
		return p
	}},
	{"greedy_logprobs5", func(int) kernel.SampleParams {
		p := params(0)
		p.NumLogprobs = 5
		return p
	}},
	{"penalties_topk", func(row int) kernel.SampleParams {
		p := params(0.8)
		p.TopK, p.RepetitionPenalty, p.FrequencyPenalty, p.Seed = 40, 1.1, 0.3, uint64(row)
		return p
	}},
}

// BenchmarkSample reports wall ns per row, rows (tokens) per second and
// CPU ns per row (all workers together) for Sample over random normal
// logits (σ = 2.5), with GOMAXPROCS workers.
func BenchmarkSample(b *testing.B) {
	for _, mode := range benchModes {
		for _, batch := range []int{1, 32, 128} {
			for _, vocab := range []int{32000, 128256} {
				name := fmt.Sprintf("cpu/%s/batch%d/vocab%d", mode.name, batch, vocab)
				b.Run(name, func(b *testing.B) { benchSample(b, mode.params, batch, vocab) })
			}
		}
	}
}

func benchSample(b *testing.B, mk func(int) kernel.SampleParams, batch, vocab int) {
	r := rand.New(rand.NewPCG(uint64(batch), uint64(vocab)))
	logits := randomLogits(r, batch*vocab, 2.5)
	sb := &kernel.SampleBatch{Rows: make([]kernel.SampleParams, batch)}
	sb.PromptTokens = make([][]int32, batch)
	sb.OutputTokens = make([][]int32, batch)
	for i := range batch {
		sb.Rows[i] = mk(i)
		sb.PromptTokens[i] = randomTokens(r, 200, vocab)
		sb.OutputTokens[i] = randomTokens(r, 100, vocab)
	}
	var res kernel.SampleResult
	var s Sampler
	b.SetBytes(int64(4 * batch * vocab))
	b.ResetTimer()
	cpu0 := cputime.Process()
	for i := 0; b.Loop(); i++ {
		for j := range sb.Rows {
			sb.Rows[j].Offset = uint64(i)
		}
		if err := s.Sample(logits, vocab, sb, &res); err != nil {
			b.Fatal(err)
		}
	}
	perRow := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(batch)
	b.ReportMetric(perRow, "ns/row")
	b.ReportMetric(1e9/perRow, "tokens/s")
	if cpu1 := cputime.Process(); cpu0 > 0 {
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(b.N)/float64(batch), "cpu-ns/row")
	}
}
