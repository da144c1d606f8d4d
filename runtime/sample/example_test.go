package sample_test

import (
	"fmt"
	"math"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/sample"
)

// Two rows over a vocabulary of four: a greedy row asking for the two top
// logprobs and a seeded top-k row whose token 0 is masked (as min_tokens
// masks EOS).
func ExampleSample() {
	logits := []float32{
		1, 3, 2, 0, // row 0
		5, 1, 4, 3, // row 1
	}
	b := &kernel.SampleBatch{
		Rows: []kernel.SampleParams{
			{Temperature: 0, TopP: 1, RepetitionPenalty: 1, NumLogprobs: 2},
			{Temperature: 0.8, TopP: 1, TopK: 2, RepetitionPenalty: 1, Seed: 7, NumLogprobs: -1},
		},
		LogitBias: []map[int32]float32{nil, {0: float32(math.Inf(-1))}},
	}
	var res kernel.SampleResult
	if err := sample.Sample(logits, 4, b, &res); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("row 0:", res.Tokens[0], "rank", res.Ranks[0], "top", res.TopIDs[0])
	fmt.Printf("row 0 logprob %.4f\n", res.Logprobs[0])
	fmt.Println("row 1 in {2, 3}:", res.Tokens[1] == 2 || res.Tokens[1] == 3)
	// Output:
	// row 0: 1 rank 1 top [1 2]
	// row 0 logprob -0.4402
	// row 1 in {2, 3}: true
}

// The uniform behind a draw depends only on the request's seed and the
// index of the token within the request.
func ExampleUniform() {
	fmt.Printf("%.6f %.6f\n", sample.Uniform(42, 0), sample.Uniform(42, 7))
	// Output:
	// 0.343292 0.734720
}
