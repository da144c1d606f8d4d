package sample

import (
	"fmt"
	"math"

	"github.com/vserve/vserve/runtime/kernel"
)

// worker holds the scratch memory of one goroutine. Nothing in it carries
// meaning from one row to the next.
type worker struct {
	z []float32 // working copy of a row when bias or penalties change it

	// Penalty bookkeeping without clearing vocab-sized arrays: an entry is
	// valid when its generation stamp equals gen.
	gen     uint32
	seenGen []uint32 // token in prompt or output
	outGen  []uint32 // token in output; count valid
	count   []int32  // occurrences in output
	touched []int32

	cands []cand              // candidates of the row being drawn
	mass  [numBuckets]float64 // weight histogram
	blk   block               // block of kept tokens and weights
	heap  []float32           // top-k selection (values)
	vals  []float32           // top-k selection for large k
	top   []idVal             // top logprobs selection
}

// sampleRow samples row i of the batch and fills its part of res.
func (w *worker) sampleRow(i int, logits []float32, vocab int, b *kernel.SampleBatch, res *kernel.SampleResult) error {
	p := &b.Rows[i]
	raw := logits[i*vocab : (i+1)*vocab]
	z := w.processedLogits(raw, p, rowTokens(b.PromptTokens, i), rowTokens(b.OutputTokens, i), rowBias(b.LogitBias, i))
	var (
		tok int32
		err error
	)
	if p.Temperature < GreedyEpsilon {
		tok, _, err = argmax(z)
	} else {
		tok, err = w.draw(z, p)
	}
	if err != nil {
		return fmt.Errorf("row %d: %w", i, err)
	}
	res.Tokens[i] = tok
	if p.NumLogprobs >= 0 {
		lp, rank, err := w.rawLogprobs(raw, tok, res.TopIDs[i], res.TopLogprobs[i])
		if err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
		res.Logprobs[i], res.Ranks[i] = lp, rank
	}
	return nil
}

func rowTokens(t [][]int32, i int) []int32 {
	if t == nil {
		return nil
	}
	return t[i]
}

func rowBias(t []map[int32]float32, i int) map[int32]float32 {
	if t == nil {
		return nil
	}
	return t[i]
}

// processedLogits returns the row after logit bias and penalties. When
// neither changes anything it returns raw itself (never written).
func (w *worker) processedLogits(raw []float32, p *kernel.SampleParams, prompt, output []int32, bias map[int32]float32) []float32 {
	repetition := p.RepetitionPenalty != 1 && len(prompt)+len(output) > 0
	outputPenalties := (p.PresencePenalty != 0 || p.FrequencyPenalty != 0) && len(output) > 0
	if len(bias) == 0 && !repetition && !outputPenalties {
		return raw
	}
	w.z = resize(w.z, len(raw))
	z := w.z
	copy(z, raw)
	for id, v := range bias {
		z[id] += v
	}
	if repetition || outputPenalties {
		w.applyPenalties(z, p, prompt, output)
	}
	return z
}

// applyPenalties applies, in vLLM's order, the repetition penalty to every
// token seen in the prompt or the output (positive logits divided by it,
// others multiplied), then subtracts frequency_penalty × (output count)
// and presence_penalty × (count > 0). All in float32.
func (w *worker) applyPenalties(z []float32, p *kernel.SampleParams, prompt, output []int32) {
	w.nextGeneration(len(z))
	gen := w.gen
	touched := w.touched[:0]
	for _, t := range output {
		if w.outGen[t] != gen {
			w.outGen[t] = gen
			w.count[t] = 0
			if w.seenGen[t] != gen {
				w.seenGen[t] = gen
				touched = append(touched, t)
			}
		}
		w.count[t]++
	}
	for _, t := range prompt {
		if w.seenGen[t] != gen {
			w.seenGen[t] = gen
			touched = append(touched, t)
		}
	}
	rep, freq, pres := p.RepetitionPenalty, p.FrequencyPenalty, p.PresencePenalty
	for _, t := range touched {
		v := z[t]
		if rep != 1 {
			if v > 0 {
				v /= rep
			} else {
				v *= rep
			}
		}
		if w.outGen[t] == gen {
			v -= float32(freq * float32(w.count[t]))
			v -= pres
		}
		z[t] = v
	}
	w.touched = touched
}

// nextGeneration invalidates all penalty stamps in O(1) (O(vocab) when the
// vocabulary grows or the counter wraps).
func (w *worker) nextGeneration(vocab int) {
	if len(w.seenGen) < vocab {
		w.seenGen = make([]uint32, vocab)
		w.outGen = make([]uint32, vocab)
		w.count = make([]int32, vocab)
		w.gen = 0
	}
	w.gen++
	if w.gen == 0 {
		clear(w.seenGen)
		clear(w.outGen)
		w.gen = 1
	}
}

// argmax returns the lowest id holding the largest value and that value.
// It fails on NaN or +Inf and when every value is -Inf. The maximum is
// found with four independent running maxima (short dependency chains),
// then a second pass stops at its first occurrence.
func argmax(z []float32) (int32, float32, error) {
	if len(z) == 0 {
		return 0, 0, ErrAllMasked
	}
	m0 := z[0]
	m1, m2, m3 := m0, m0, m0
	nan := false
	i := 0
	for ; i+4 <= len(z); i += 4 {
		a, b, c, d := z[i], z[i+1], z[i+2], z[i+3]
		if a > m0 {
			m0 = a
		}
		if b > m1 {
			m1 = b
		}
		if c > m2 {
			m2 = c
		}
		if d > m3 {
			m3 = d
		}
		if a != a || b != b || c != c || d != d {
			nan = true
		}
	}
	for ; i < len(z); i++ {
		v := z[i]
		if v > m0 {
			m0 = v
		}
		if v != v {
			nan = true
		}
	}
	m := max(m0, m1, m2, m3)
	switch {
	case nan:
		return 0, 0, ErrNonFinite
	case math.IsInf(float64(m), 1):
		return 0, 0, ErrNonFinite
	case math.IsInf(float64(m), -1):
		return 0, 0, ErrAllMasked
	}
	for i, v := range z {
		if v == m {
			return int32(i), m, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: maximum %v not found", ErrNonFinite, m) // unreachable
}
