package runner_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	eng "github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/internal/sharedtest"
	"github.com/vserve/vserve/scheduler"
)

// failOnce fails the first step that schedules tokens, as a device error
// would, and passes every other step to the runner.
type failOnce struct {
	inner  eng.Executor
	failed bool
}

func (f *failOnce) Execute(out *scheduler.Output) (*scheduler.RunnerOutput, error) {
	if !f.failed && out.TotalNumScheduledTokens > 0 {
		f.failed = true
		return nil, errors.New("injected device error")
	}
	return f.inner.Execute(out)
}

// TestFailedStepDoesNotPoisonThePrefixCache runs the real engine loop,
// scheduler, runner and CPU kernels on stories260K. A request whose first
// step fails ends with an error; a later request with the same prompt
// must not hit the blocks that step was to fill (their KV was never
// written), so it generates what it generates on a fresh engine.
func TestFailedStepDoesNotPoisonThePrefixCache(t *testing.T) {
	dir := sharedtest.Path(t, "models", "stories260K", "hf")
	cfg := scheduler.Config{MaxModelLen: 128, BlockSize: 16, NumBlocks: 32, EnablePrefixCaching: true}
	prompt := []int32{1}
	for i := 0; i < 40; i++ {
		prompt = append(prompt, int32(300+3*i))
	}
	generate := func(e *eng.Engine, id string) eng.Output {
		st, err := e.Add(context.Background(), &eng.Request{ID: id, PromptTokenIDs: prompt, Params: greedy(10)})
		require.NoError(t, err)
		defer st.Close()
		out, err := st.Collect(context.Background())
		if out.Finish != scheduler.FinishError {
			require.NoError(t, err)
		}
		return out
	}
	run := func(failFirst bool) (first, second eng.Output) {
		base := newEngine(t, dir, cfg)
		var exec eng.Executor = base.run
		if failFirst {
			exec = &failOnce{inner: base.run}
		}
		e := eng.New(eng.Config{Logger: slog.New(slog.DiscardHandler)}, base.sched, exec)
		defer func() { require.NoError(t, e.Shutdown(context.Background())) }()
		return generate(e, "a"), generate(e, "b")
	}
	_, want := run(false)
	require.Equal(t, 32, want.NumCachedTokens, "without a failure the second request hits two blocks")
	failed, got := run(true)
	assert.Equal(t, scheduler.FinishError, failed.Finish)
	assert.Equal(t, 0, got.NumCachedTokens, "no hits on blocks that were never computed")
	assert.Equal(t, want.TokenIDs, got.TokenIDs)
}
