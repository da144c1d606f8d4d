package tracing

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
)

// TestNoStateLeak runs many requests through every termination path at
// several sampling rates and asserts that no per-request state survives.
func TestNoStateLeak(t *testing.T) {
	paths := []func(h *harness, f *flow, step uint64){
		func(h *harness, f *flow, step uint64) { // success
			f.schedule(step, false, f.req.prompt)
			f.token(step)
			f.finish(step, scheduler.FinishStop)
			f.api.Departed(server.Outcome{CompletionTokens: 1, Times: f.times})
		},
		func(h *harness, f *flow, step uint64) { // abort while waiting
			f.finish(step, scheduler.FinishAbort)
			f.api.Aborted(server.ReasonClientDisconnect, errors.New("gone"))
		},
		func(h *harness, f *flow, step uint64) { // abort while running, after a preemption
			f.schedule(step, false, 1)
			f.preempt(step + 1)
			f.schedule(step+2, true, f.req.prompt)
			f.api.Aborted(server.ReasonTimeout, errors.New("deadline"))
			f.finish(step+2, scheduler.FinishAbort)
		},
		func(h *harness, f *flow, step uint64) { // error
			f.schedule(step, false, f.req.prompt)
			f.finish(step, scheduler.FinishError)
			f.api.Aborted(server.ReasonGeneration, errors.New("boom"))
		},
		func(h *harness, f *flow, step uint64) { // rejected by the engine: no scheduler event at all
			h.end(f.req, f.headers, scheduler.FinishAbort, f.times)
			f.api.Aborted(server.ReasonOverloaded, errors.New("queue full"))
		},
		func(h *harness, f *flow, step uint64) { // handler panicked: only End
			f.schedule(step, false, f.req.prompt)
			f.finish(step, scheduler.FinishAbort)
		},
		func(h *harness, f *flow, step uint64) { // engine reports the end before the scheduler does
			f.schedule(step, false, f.req.prompt)
			h.end(f.req, f.headers, scheduler.FinishAbort, f.times)
			h.obs.Finished(f.req, step, scheduler.FinishAbort)
		},
	}
	for _, rate := range []float64{0, 0.5, 1} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				c.JourneySampler = NewSeededRateSampler(rate, 7)
				c.StepTracingEnabled = true
				c.StepSampleRate = 1
				c.StepRichSubsampleRate = 1
			})
			for i := range 700 {
				f := h.newFlow(fmt.Sprintf("id-%d", i%50), 6, 3, nil) // ids are reused
				paths[i%len(paths)](h, f, uint64(i+1))
				f.api.End()
			}
			// Validation failures never reach the engine.
			for range 50 {
				api := h.arrive(nil)
				api.Aborted(server.ReasonValidation, errors.New("bad"))
				api.End()
			}
			h.requireNoState()
		})
	}
}

func TestNoStateLeakWhenTracingOff(t *testing.T) {
	tel, err := Setup(t.Context(), DefaultConfig())
	require.NoError(t, err)
	defer tel.Shutdown(t.Context())
	h := &harness{t: t, tel: tel, obs: tel.SchedulerObserver()}
	for i := range 100 {
		f := h.newFlow(fmt.Sprint(i), 3, 2, nil)
		require.Nil(t, f.headers)
		f.schedule(1, false, 3)
		f.token(1)
		f.complete(1, scheduler.FinishStop, 1)
	}
	h.requireNoState()
	_ = time.Now
}
