package runner_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/runtime/runner"
	"github.com/vserve/vserve/scheduler"
)

// eventBackend is the CPU backend with a fake kernel.EventTimer whose
// "device clock" advances one hour per mark, so device times are known.
type eventBackend struct {
	kernel.Backend
	next     int
	live     map[int]bool
	failMark bool
}

func (e *eventBackend) Mark() (int, error) {
	if e.failMark {
		return 0, errors.New("no event")
	}
	e.next++
	e.live[e.next] = true
	return e.next, nil
}

func (e *eventBackend) Elapsed(from, to int) (time.Duration, error) {
	if !e.live[from] || !e.live[to] {
		return 0, errors.New("released mark")
	}
	return time.Duration(to-from) * time.Hour, nil
}

func (e *eventBackend) ReleaseMarks(marks ...int) {
	for _, m := range marks {
		delete(e.live, m)
	}
}

func TestDeviceTimingFromEventTimer(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, model.Generate(dir, model.SpecTiny, 1))
	cpu, err := kernel.Open("cpu", kernel.Options{Threads: 1})
	require.NoError(t, err)
	defer cpu.Close()
	be := &eventBackend{Backend: cpu, live: map[int]bool{}}
	m, err := model.Load(dir, be, model.LoadOptions{})
	require.NoError(t, err)
	defer m.Close()
	sc := scheduler.Config{MaxModelLen: 64, BlockSize: 16, NumBlocks: 8, MaxNumBatchedTokens: 32, MaxNumSeqs: 2}
	s, err := scheduler.New(sc)
	require.NoError(t, err)
	r, err := runner.New(m, be, runner.Config{BlockSize: 16, NumBlocks: 8, MaxNumSeqs: 2, MaxNumBatchedTokens: 32, MaxModelLen: 64})
	require.NoError(t, err)
	defer r.Close()
	params := scheduler.DefaultSamplingParams(3)
	params.IgnoreEOS = true
	require.NoError(t, s.AddRequest(&scheduler.Request{ID: "a", PromptTokenIDs: []int32{1, 5, 6}, Params: params}))

	out := s.Schedule()
	ro, err := r.Execute(out)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, ro.Timing.Forward, "forward time comes from the device events")
	assert.Equal(t, time.Hour, ro.Timing.Sample, "sampling time comes from the device events")
	assert.Empty(t, be.live, "every mark is released")
	s.Update(out, ro)

	// Without events the host wall times stand (far below an hour).
	be.failMark = true
	out = s.Schedule()
	ro, err = r.Execute(out)
	require.NoError(t, err)
	assert.Less(t, ro.Timing.Forward, time.Hour)
	assert.Less(t, ro.Timing.Sample, time.Hour)
	s.Update(out, ro)
}
