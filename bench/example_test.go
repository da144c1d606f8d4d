package bench_test

import (
	"context"
	"fmt"
	"time"

	"github.com/vserve/vserve/bench"
)

// A load run against a stand-in server: every request takes 10 ms to its
// first token and 1 ms per further token. Real runs use bench.NewClient(...).Do
// as the sender.
func ExampleRun() {
	send := func(ctx context.Context, p bench.Prompt) bench.Result {
		return bench.Result{
			Start: time.Now(), TTFT: 10 * time.Millisecond,
			E2E:          10*time.Millisecond + time.Duration(p.OutputLen-1)*time.Millisecond,
			PromptTokens: p.PromptLen, OutputTokens: p.OutputLen,
		}
	}
	prompts := make([]bench.Prompt, 8)
	for i := range prompts {
		prompts[i] = bench.Prompt{Text: "hello", PromptLen: 4, OutputLen: 11}
	}
	results, elapsed, err := bench.Run(context.Background(), send, prompts, bench.LoadConfig{Concurrency: 4})
	if err != nil {
		fmt.Println(err)
		return
	}
	s := bench.Summarize("stand-in", results, elapsed, bench.SLO{TTFT: 50 * time.Millisecond})
	fmt.Printf("completed %d, output tokens %d, TTFT p50 %.0f ms, TPOT p50 %.0f ms\n",
		s.Completed, s.OutputTokens, s.TTFT.Median, s.TPOT.Median)
	// Output: completed 8, output tokens 88, TTFT p50 10 ms, TPOT p50 1 ms
}
