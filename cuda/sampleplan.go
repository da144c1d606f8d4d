package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/sample"
)

// sampleRow mirrors struct SampleRow of kernels/sampling.cu (64 bytes).
type sampleRow struct {
	Seed, Offset                             uint64
	Temperature, TopP, MinP, Rep, Pres, Freq float32
	TopK, NumLogprobs                        int32
	PenBegin, PenEnd, BiasBegin, BiasEnd     int32
}

const sampleRowBytes = 64

var _ [sampleRowBytes - unsafe.Sizeof(sampleRow{})]struct{}
var _ [unsafe.Sizeof(sampleRow{}) - sampleRowBytes]struct{}

// Device status codes of sampling.cu and logprobs.cu.
const (
	statusNonFinite = 1
	statusAllMasked = 2
	sampleThreads   = 1024
	logprobsThreads = 512
)

// samplePlan is the host side of one Sample call: the packed parameters
// uploaded in one copy.
type samplePlan struct {
	rows     []sampleRow
	pen      []int32 // pairs (token id, output count)
	bias     []int32 // pairs (token id, float bits)
	nlp      []int32 // NumLogprobs per row
	maxK     int
	modified bool // some row has bias or penalties: needs the work copy
	logprobs bool // some row wants logprobs
}

// buildSamplePlan validates the batch (with runtime/sample's rules and
// errors) and packs it.
func buildSamplePlan(vocab int, b *kernel.SampleBatch) (*samplePlan, error) {
	if vocab <= 0 || vocab > math.MaxInt32 {
		return nil, fmt.Errorf("%w: vocab %d out of range", sample.ErrInvalid, vocab)
	}
	n := len(b.Rows)
	for _, f := range []struct {
		name string
		l    int
		nil_ bool
	}{{"PromptTokens", len(b.PromptTokens), b.PromptTokens == nil}, {"OutputTokens", len(b.OutputTokens), b.OutputTokens == nil},
		{"LogitBias", len(b.LogitBias), b.LogitBias == nil}} {
		if !f.nil_ && f.l != n {
			return nil, fmt.Errorf("%w: %s has %d entries for %d rows", sample.ErrInvalid, f.name, f.l, n)
		}
	}
	p := &samplePlan{rows: make([]sampleRow, n), nlp: make([]int32, n)}
	counts := map[int32]int32{}
	for i := range b.Rows {
		r := &b.Rows[i]
		if err := validateRow(r, vocab); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		var prompt, output []int32
		if b.PromptTokens != nil {
			prompt = b.PromptTokens[i]
		}
		if b.OutputTokens != nil {
			output = b.OutputTokens[i]
		}
		if err := checkIDs("prompt", prompt, vocab); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		if err := checkIDs("output", output, vocab); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		topK := r.TopK
		if topK < 0 || topK > math.MaxInt32 {
			topK = 0
		}
		sr := sampleRow{Seed: r.Seed, Offset: r.Offset, Temperature: r.Temperature, TopP: r.TopP, MinP: r.MinP,
			Rep: r.RepetitionPenalty, Pres: r.PresencePenalty, Freq: r.FrequencyPenalty,
			TopK: int32(topK), NumLogprobs: int32(max(r.NumLogprobs, -1))}
		sr.BiasBegin = int32(len(p.bias) / 2)
		if b.LogitBias != nil {
			for id, v := range b.LogitBias[i] {
				if id < 0 || int(id) >= vocab {
					return nil, fmt.Errorf("row %d: %w: logit_bias token %d outside vocab %d", i, sample.ErrInvalid, id, vocab)
				}
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 1) {
					return nil, fmt.Errorf("row %d: %w: logit_bias %v for token %d (NaN and +Inf are not allowed)", i, sample.ErrInvalid, v, id)
				}
				p.bias = append(p.bias, id, int32(math.Float32bits(v)))
			}
		}
		sr.BiasEnd = int32(len(p.bias) / 2)
		sr.PenBegin = int32(len(p.pen) / 2)
		repetition := r.RepetitionPenalty != 1 && len(prompt)+len(output) > 0
		outputPen := (r.PresencePenalty != 0 || r.FrequencyPenalty != 0) && len(output) > 0
		if repetition || outputPen {
			clear(counts)
			for _, t := range output {
				counts[t]++
			}
			for _, t := range prompt {
				if _, ok := counts[t]; !ok {
					counts[t] = 0
				}
			}
			for t, c := range counts {
				p.pen = append(p.pen, t, c)
			}
		}
		sr.PenEnd = int32(len(p.pen) / 2)
		if sr.BiasEnd > sr.BiasBegin || sr.PenEnd > sr.PenBegin {
			p.modified = true
		}
		if r.NumLogprobs >= 0 {
			p.logprobs = true
			p.maxK = max(p.maxK, r.NumLogprobs)
		}
		p.nlp[i] = sr.NumLogprobs
		p.rows[i] = sr
	}
	return p, nil
}

// validateRow applies runtime/sample's parameter ranges.
func validateRow(p *kernel.SampleParams, vocab int) error {
	finite := func(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
	switch {
	case !finite(p.Temperature) || p.Temperature < 0:
		return fmt.Errorf("%w: temperature %v must be finite and >= 0", sample.ErrInvalid, p.Temperature)
	case !(p.TopP > 0 && p.TopP <= 1):
		return fmt.Errorf("%w: top_p %v must be in (0, 1]", sample.ErrInvalid, p.TopP)
	case !(p.MinP >= 0 && p.MinP <= 1):
		return fmt.Errorf("%w: min_p %v must be in [0, 1]", sample.ErrInvalid, p.MinP)
	case !finite(p.RepetitionPenalty) || p.RepetitionPenalty <= 0:
		return fmt.Errorf("%w: repetition_penalty %v must be finite and > 0", sample.ErrInvalid, p.RepetitionPenalty)
	case !finite(p.PresencePenalty):
		return fmt.Errorf("%w: presence_penalty %v must be finite", sample.ErrInvalid, p.PresencePenalty)
	case !finite(p.FrequencyPenalty):
		return fmt.Errorf("%w: frequency_penalty %v must be finite", sample.ErrInvalid, p.FrequencyPenalty)
	case p.NumLogprobs > vocab:
		return fmt.Errorf("%w: %d logprobs asked of a vocab of %d", sample.ErrInvalid, p.NumLogprobs, vocab)
	}
	return nil
}

func checkIDs(what string, ids []int32, vocab int) error {
	for _, id := range ids {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("%w: %s token %d outside vocab %d", sample.ErrInvalid, what, id, vocab)
		}
	}
	return nil
}

// pack lays the plan out as bytes: rows | pen | bias | nlp, each 8-byte
// aligned; it returns the bytes and the offsets of the parts.
func (p *samplePlan) pack() ([]byte, [4]int) {
	var off [4]int
	align := func(n int) int { return (n + 7) &^ 7 }
	off[0] = 0
	off[1] = align(len(p.rows) * sampleRowBytes)
	off[2] = align(off[1] + 4*len(p.pen))
	off[3] = align(off[2] + 4*len(p.bias))
	size := align(off[3] + 4*len(p.nlp))
	buf := make([]byte, max(size, 8))
	le := binary.LittleEndian
	for i, r := range p.rows {
		o := i * sampleRowBytes
		le.PutUint64(buf[o:], r.Seed)
		le.PutUint64(buf[o+8:], r.Offset)
		for j, f := range []float32{r.Temperature, r.TopP, r.MinP, r.Rep, r.Pres, r.Freq} {
			le.PutUint32(buf[o+16+4*j:], math.Float32bits(f))
		}
		for j, v := range []int32{r.TopK, r.NumLogprobs, r.PenBegin, r.PenEnd, r.BiasBegin, r.BiasEnd} {
			le.PutUint32(buf[o+40+4*j:], uint32(v))
		}
	}
	for j, v := range p.pen {
		le.PutUint32(buf[off[1]+4*j:], uint32(v))
	}
	for j, v := range p.bias {
		le.PutUint32(buf[off[2]+4*j:], uint32(v))
	}
	for j, v := range p.nlp {
		le.PutUint32(buf[off[3]+4*j:], uint32(v))
	}
	return buf, off
}

// unpackSample copies the device results into res and turns status codes
// into runtime/sample's errors (the lowest failing row).
func unpackSample(raw []byte, rows, k int, params []kernel.SampleParams, res *kernel.SampleResult) error {
	le := binary.LittleEndian
	w := func(i int) uint32 { return le.Uint32(raw[4*i:]) }
	for i := range rows {
		if err := statusErr(int32(w(rows + i))); err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
		res.Tokens[i] = int32(w(i))
		if params[i].NumLogprobs < 0 {
			continue
		}
		if err := statusErr(int32(w(2*rows + i))); err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
		res.Ranks[i] = int(int32(w(3*rows + i)))
		res.Logprobs[i] = math.Float32frombits(w(4*rows + i))
		for j := range params[i].NumLogprobs {
			res.TopIDs[i][j] = int32(w(5*rows + i*k + j))
			res.TopLogprobs[i][j] = math.Float32frombits(w(5*rows + rows*k + i*k + j))
		}
	}
	return nil
}

func statusErr(s int32) error {
	switch s {
	case 0:
		return nil
	case statusNonFinite:
		return sample.ErrNonFinite
	case statusAllMasked:
		return sample.ErrAllMasked
	}
	return fmt.Errorf("cuda: sampling status %d", s)
}
