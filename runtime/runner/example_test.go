package runner_test

import (
	"fmt"
	"os"

	"github.com/vserve/vserve/runtime/kernel"
	_ "github.com/vserve/vserve/runtime/kernel/cpu"
	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/runtime/runner"
	"github.com/vserve/vserve/scheduler"
)

// The engine loop in miniature: the scheduler plans each step, the runner
// executes it on the model, and the scheduler turns the sampled tokens
// into per-request outputs.
func Example() {
	dir, err := os.MkdirTemp("", "runner-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := model.Generate(dir, model.SpecTiny, 1); err != nil {
		panic(err)
	}
	be, err := kernel.Open("cpu", kernel.Options{})
	if err != nil {
		panic(err)
	}
	defer be.Close()
	m, err := model.Load(dir, be, model.LoadOptions{})
	if err != nil {
		panic(err)
	}
	defer m.Close()

	sc := scheduler.Config{MaxModelLen: 128, BlockSize: 16, NumBlocks: 32, MaxNumBatchedTokens: 64, MaxNumSeqs: 4}
	s, err := scheduler.New(sc)
	if err != nil {
		panic(err)
	}
	r, err := runner.New(m, be, runner.Config{BlockSize: sc.BlockSize, NumBlocks: sc.NumBlocks,
		MaxNumSeqs: sc.MaxNumSeqs, MaxNumBatchedTokens: sc.MaxNumBatchedTokens, MaxModelLen: sc.MaxModelLen})
	if err != nil {
		panic(err)
	}
	defer r.Close()

	params := scheduler.DefaultSamplingParams(5)
	params.IgnoreEOS = true
	for i, prompt := range [][]int32{{1, 20, 21, 22}, {1, 30, 31}} {
		if err := s.AddRequest(&scheduler.Request{ID: fmt.Sprint("req", i), PromptTokenIDs: prompt, Params: params}); err != nil {
			panic(err)
		}
	}
	generated := map[string]int{}
	for s.HasUnfinished() {
		out := s.Schedule()
		ro, err := r.Execute(out)
		if err != nil {
			panic(err)
		}
		deltas, _ := s.Update(out, ro)
		for _, d := range deltas {
			generated[d.ID] += len(d.NewTokenIDs)
		}
	}
	fmt.Println(generated["req0"], generated["req1"])
	// Output: 5 5
}
