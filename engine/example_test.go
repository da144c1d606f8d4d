package engine_test

import (
	"context"
	"fmt"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/engine/enginetest"
	"github.com/vserve/vserve/scheduler"
)

// Using the engine as a library, without HTTP: make a scheduler and an
// executor (here the real scheduler and a fake model; in production
// runner.New(model, backend, ...)), start the engine, add a request and
// read its stream.
func Example() {
	sched, err := scheduler.New(scheduler.Config{MaxModelLen: 64, NumBlocks: 32, BlockSize: 16})
	if err != nil {
		panic(err)
	}
	var steps int
	eng := engine.New(engine.Config{Hooks: engine.Hooks{
		OnStep: func(r *engine.StepRecord) { steps++ }, // step timings for metrics and tracing
	}}, sched, &enginetest.FakeExecutor{})
	defer eng.Shutdown(context.Background())

	params := scheduler.DefaultSamplingParams(4)
	params.Temperature = 0
	stream, err := eng.Add(context.Background(), &engine.Request{ID: "req-1", PromptTokenIDs: []int32{1, 5, 9}, Params: params})
	if err != nil {
		panic(err)
	}
	defer stream.Close()
	// Next returns coalesced deltas as they come; Collect reads to the end.
	out, err := stream.Collect(context.Background())
	if err != nil {
		panic(err)
	}
	fmt.Println("tokens", out.TokenIDs, "finish", out.Finish)
	_ = eng.Shutdown(context.Background())
	fmt.Println("steps", steps)
	// Output:
	// tokens [100 101 102 103] finish length
	// steps 4
}
