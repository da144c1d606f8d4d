package sample

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/vserve/vserve/runtime/kernel"
)

// byteReader hands out fuzz bytes, zeros once they run out.
type byteReader struct{ b []byte }

func (r *byteReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func fuzzParams(r *byteReader, vocab int) kernel.SampleParams {
	p := params(float32(r.next()) / 64) // 0 .. ~4
	if c := r.next(); c < 32 {
		p.Temperature = float32(c) * 1e-6 // around the greedy threshold
	}
	p.TopK = int(int8(r.next())) % (vocab + 2)
	if c := r.next(); c >= 128 {
		p.TopP = float32(c-127) / 128
	}
	if c := r.next(); c >= 160 {
		p.MinP = float32(c-160) / 95
	}
	p.RepetitionPenalty = 0.25 + float32(r.next())/64
	p.FrequencyPenalty = float32(int8(r.next())) / 64
	p.PresencePenalty = float32(int8(r.next())) / 64
	p.NumLogprobs = int(int8(r.next())) % (vocab + 1)
	p.Seed = uint64(r.next()) * 0x9E3779B9
	p.Offset = uint64(r.next())
	return p
}

func fuzzLogits(r *byteReader, vocab int) []float32 {
	x := make([]float32, vocab)
	for i := range x {
		switch c := r.next(); c {
		case 255:
			x[i] = float32(math.Inf(-1))
		case 254:
			x[i] = 0
		default:
			x[i] = float32(int8(c)) / 8
		}
	}
	return x
}

func fuzzTokens(r *byteReader, vocab int) []int32 {
	t := make([]int32, int(r.next())%8)
	for i := range t {
		t[i] = int32(int(r.next()) % vocab)
	}
	return t
}

// FuzzSample checks, on arbitrary parameters and logits, that Sample
// never panics, that it fails only with its documented errors, and that a
// sampled token is in range and in the reference keep set.
func FuzzSample(f *testing.F) {
	f.Add([]byte{5, 64, 0, 0, 0, 0, 64, 0, 0, 0, 1, 2, 10, 20, 30, 40, 50})
	f.Add([]byte{40, 0, 0, 3, 200, 200, 90, 30, 30, 4, 9, 9, 255, 254, 1, 1, 1, 1})
	f.Add([]byte{1, 100, 50, 0, 255, 255, 64, 0, 0, 0, 0, 0, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &byteReader{data}
		vocab := 1 + int(r.next())%48
		p := fuzzParams(r, vocab)
		prompt, output := fuzzTokens(r, vocab), fuzzTokens(r, vocab)
		bias := map[int32]float32{}
		if c := r.next(); c%4 == 0 {
			bias[int32(int(c)%vocab)] = float32(math.Inf(-1))
		} else if c%4 == 1 {
			bias[int32(int(c)%vocab)] = float32(int8(r.next()))
		}
		x := fuzzLogits(r, vocab)
		b := &kernel.SampleBatch{
			Rows: []kernel.SampleParams{p}, PromptTokens: [][]int32{prompt},
			OutputTokens: [][]int32{output}, LogitBias: []map[int32]float32{bias},
		}
		var res kernel.SampleResult
		err := Sample(x, vocab, b, &res)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNonFinite) && !errors.Is(err, ErrAllMasked) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		tok := res.Tokens[0]
		if tok < 0 || int(tok) >= vocab {
			t.Fatalf("token %d outside vocab %d", tok, vocab)
		}
		z := refProcessed(x, p, prompt, output, bias)
		if math.IsInf(z[tok], -1) {
			t.Fatalf("sampled masked token %d", tok)
		}
		// A slightly larger top_p keeps a superset: it absorbs rounding at
		// the top_p boundary.
		loose := p
		if loose.TopP < 1 {
			loose.TopP = min(1, loose.TopP*(1+1e-5))
		}
		ref := refSample(z, loose)
		if ref.greedy {
			if tok != ref.token {
				t.Fatalf("greedy token %d, argmax %d", tok, ref.token)
			}
		} else if !slices.Contains(ref.kept, tok) {
			t.Fatalf("token %d not in keep set %v (params %+v)", tok, ref.kept, p)
		}
		if p.NumLogprobs >= 0 && (res.Ranks[0] < 1 || res.Ranks[0] > vocab) {
			t.Fatalf("rank %d", res.Ranks[0])
		}
	})
}
