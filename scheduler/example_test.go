package scheduler_test

import (
	"fmt"

	"github.com/vserve/vserve/scheduler"
)

// One request from prefill to finish: a 20-token prompt is prefilled in two
// chunks (the budget is 16 tokens a step), then decodes until it samples EOS.
func Example() {
	s, err := scheduler.New(scheduler.Config{
		MaxModelLen:         64,
		MaxNumBatchedTokens: 16,
		MaxNumSeqs:          4,
		BlockSize:           8,
		NumBlocks:           16,
		EnablePrefixCaching: true,
	})
	if err != nil {
		panic(err)
	}
	prompt := make([]int32, 20)
	for i := range prompt {
		prompt[i] = int32(100 + i)
	}
	const eos = 2
	if err := s.AddRequest(&scheduler.Request{
		ID:             "req-1",
		PromptTokenIDs: prompt,
		Params:         scheduler.DefaultSamplingParams(10),
		EOSTokenIDs:    []int32{eos},
	}); err != nil {
		panic(err)
	}

	next := []int32{7, 8, eos} // what our pretend model samples
	for s.HasUnfinished() {
		out := s.Schedule()
		// A runner would execute out here; it samples only for requests
		// whose scheduled tokens reach the end of their token list.
		ro := &scheduler.RunnerOutput{Step: out.Step}
		for _, nr := range out.NewRequests {
			if nr.NumComputedTokens+out.NumScheduledTokens[nr.ID] == len(nr.PromptTokenIDs) {
				ro.ReqIDs = append(ro.ReqIDs, nr.ID)
				ro.SampledTokenIDs = append(ro.SampledTokenIDs, []int32{next[0]})
				next = next[1:]
			}
		}
		for _, cr := range out.CachedRequests {
			view, _ := s.Request(cr.ID)
			if cr.NumComputedTokens+out.NumScheduledTokens[cr.ID] == view.NumPromptTokens()+view.NumOutputTokens() {
				ro.ReqIDs = append(ro.ReqIDs, cr.ID)
				ro.SampledTokenIDs = append(ro.SampledTokenIDs, []int32{next[0]})
				next = next[1:]
			}
		}
		deltas, stats := s.Update(out, ro)
		fmt.Printf("step %d: scheduled %d tokens", out.Step, out.TotalNumScheduledTokens)
		for _, d := range deltas {
			fmt.Printf(", %s +%v", d.ID, d.NewTokenIDs)
			if d.FinishReason != scheduler.FinishNone {
				fmt.Printf(" finished (%s)", d.FinishReason)
			}
		}
		fmt.Printf(", running %d, KV blocks free %d/%d\n", stats.NumRunning, stats.KVBlocksFree, stats.KVBlocksTotal)
	}
	last := s.Schedule()
	fmt.Printf("step %d: scheduled %d tokens, runner drops %v\n", last.Step, last.TotalNumScheduledTokens, last.FinishedRequestIDs)
	// Output:
	// step 1: scheduled 16 tokens, running 1, KV blocks free 13/15
	// step 2: scheduled 4 tokens, req-1 +[7], running 1, KV blocks free 12/15
	// step 3: scheduled 1 tokens, req-1 +[8], running 1, KV blocks free 12/15
	// step 4: scheduled 1 tokens, req-1 +[2] finished (stop), running 0, KV blocks free 15/15
	// step 5: scheduled 0 tokens, runner drops [req-1]
}
