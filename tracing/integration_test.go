package tracing

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/engine/enginetest"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
)

// TestWithRealSchedulerAndEngine drives the real scheduler and engine loop
// (with the engine's fake executor) under KV pressure, so requests are
// preempted and resumed, while clients abort some requests early, some
// late, and shutdown aborts the rest. Every request is journey-traced. At
// the end no per-request state survives and every span pair is complete.
func TestWithRealSchedulerAndEngine(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.StepTracingEnabled, c.StepSampleRate, c.StepRichSubsampleRate = true, 1, 0.5
	})
	sched, err := scheduler.New(scheduler.Config{MaxNumSeqs: 16, MaxNumBatchedTokens: 64, MaxModelLen: 64,
		BlockSize: 4, NumBlocks: 24})
	require.NoError(t, err)
	const n = 60
	// The first step waits until every request was added, so that they
	// compete for the KV pool whatever the goroutines' timing.
	var added sync.WaitGroup
	var first sync.Once
	added.Add(n)
	gate := func(uint64) error {
		first.Do(added.Wait)
		return nil
	}
	eng := engine.New(engine.Config{Hooks: h.tel.EngineHooks()}, sched, &enginetest.FakeExecutor{Fail: gate})

	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { serveOne(t, h, eng, i, added.Done) })
	}
	wg.Wait()
	shutdownCtx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, eng.Shutdown(shutdownCtx))
	h.requireNoState()

	api, core := h.spans(SpanRequest), h.spans(SpanCore)
	require.Len(t, api, n)
	require.Len(t, core, n)
	parents := map[trace.SpanID]bool{}
	for _, s := range api {
		parents[s.SpanContext().SpanID()] = true
	}
	preempted := 0
	for _, c := range core {
		assert.True(t, parents[c.Parent().SpanID()], "llm_core under an llm_request")
		names := eventNames(c)
		require.NotEmpty(t, names)
		assert.Equal(t, "journey.QUEUED", names[0])
		assert.Equal(t, "journey.FINISHED", names[len(names)-1])
		assert.LessOrEqual(t, len(events(c, "journey.FIRST_TOKEN")), 1)
		preempted += len(events(c, "journey.PREEMPTED"))
		checkMonotonicSteps(t, c)
	}
	assert.Positive(t, preempted, "the KV pool is small enough to force preemptions")
	require.NoError(t, h.tel.Shutdown(t.Context()))
	windows := 0
	for _, s := range h.rec.Ended() {
		if s.InstrumentationScope().Name == ScopeStep {
			windows++
			assert.Zero(t, s.DroppedEvents())
		}
	}
	assert.Positive(t, windows)
}

// serveOne plays a handler: i%4 selects run to completion, abort after the
// first token, abort at once, or a short max_tokens. It calls added once
// the request was handed to the engine (or refused).
func serveOne(t *testing.T, h *harness, eng *engine.Engine, i int, added func()) {
	api := h.arrive(nil)
	defer api.End()
	maxTokens := 24
	if i%4 == 3 {
		maxTokens = 1
	}
	api.Parsed(server.RequestInfo{RequestID: fmt.Sprint("cmpl-", i), Model: "m", PromptTokens: 12, MaxTokens: &maxTokens, N: ptr(1)})
	prompt := make([]int32, 12)
	for k := range prompt {
		prompt[k] = int32(k + i)
	}
	params := scheduler.DefaultSamplingParams(maxTokens)
	params.IgnoreEOS = true
	st, err := eng.Add(t.Context(), &engine.Request{ID: fmt.Sprint("r", i), PromptTokenIDs: prompt, Params: params,
		TraceHeaders: api.TraceHeaders()})
	added()
	if err != nil {
		api.Aborted(server.ReasonOverloaded, err)
		return
	}
	defer st.Close()
	api.HandoffToCore(time.Time{})
	if i%4 == 2 {
		eng.Abort(st.ID(), engine.CauseClientDisconnect)
	}
	tokens := 0
	for {
		o, err := st.Next(t.Context())
		if err != nil {
			api.Aborted(server.ReasonGeneration, err)
			return
		}
		if len(o.TokenIDs) > 0 && tokens == 0 {
			api.FirstResponseFromCore(o.FirstTokenTime)
			if i%4 == 1 {
				eng.Abort(st.ID(), engine.CauseClientDisconnect)
			}
		}
		tokens += len(o.TokenIDs)
		if o.Finished() {
			if o.Finish == scheduler.FinishAbort {
				api.Aborted(server.ReasonClientDisconnect, fmt.Errorf("aborted"))
				return
			}
			api.Departed(server.Outcome{CompletionTokens: tokens, Times: o.Times})
			return
		}
	}
}

// checkMonotonicSteps: journey events never go back in scheduler steps.
func checkMonotonicSteps(t *testing.T, s sdktrace.ReadOnlySpan) {
	var last int64
	for _, e := range s.Events() {
		step := attrMap(e.Attributes)[AttrSchedulerStep].AsInt64()
		assert.GreaterOrEqual(t, step, last, "%s in %v", e.Name, eventNames(s))
		last = step
	}
}
