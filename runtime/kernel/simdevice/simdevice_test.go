package simdevice

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/runtime/kernel"
)

func TestSampleDependsOnlyOnLengths(t *testing.T) {
	be, err := New(kernel.Options{})
	require.NoError(t, err)
	defer be.Close()
	const vocab = 512
	b := &kernel.SampleBatch{
		Rows:         []kernel.SampleParams{{Temperature: 1}, {NumLogprobs: 2}, {}},
		PromptTokens: [][]int32{{1, 2, 3}, {1, 2, 3}, {4}},
		OutputTokens: [][]int32{nil, nil, {9, 9}},
	}
	var res kernel.SampleResult
	require.NoError(t, be.Sample(nil, vocab, b, &res))
	require.Equal(t, []int32{vocab/2 + 3, vocab/2 + 3, vocab/2 + 63}, res.Tokens)
	require.Equal(t, []int{1, 1, 1}, res.Ranks)
	require.Len(t, res.TopIDs, 3)
	require.Empty(t, res.TopIDs[0])
	require.Equal(t, []int32{vocab/2 + 3 + 1, vocab/2 + 3 + 2}, res.TopIDs[1])
	for _, tok := range res.Tokens {
		require.GreaterOrEqual(t, tok, int32(vocab/2))
		require.Less(t, tok, int32(vocab))
	}
	require.Error(t, be.Sample(nil, 1, b, &res), "no room for a token")
}

// TestOperationsQueueTheirCost: each operation adds its cost to the
// simulated queue, behind what is queued already; Sync drains it.
func TestOperationsQueueTheirCost(t *testing.T) {
	t.Setenv("VSERVE_SIMDEVICE_OP_US", "1000")
	t.Setenv("VSERVE_SIMDEVICE_TFLOPS", "0.001") // 1 GFLOP/s
	be, err := New(kernel.Options{})
	require.NoError(t, err)
	defer be.Close()
	before := time.Now()
	require.NoError(t, be.MatMul(nil, nil, nil, 10, 100, 500)) // 1 MFLOP: 1 ms
	require.NoError(t, be.RMSNorm(nil, nil, nil, 1, 1, 0))
	after := time.Now()
	const queued = 3 * time.Millisecond // two operations of 1 ms and 1 ms of arithmetic
	require.False(t, be.busyUntil.Before(before.Add(queued)))
	require.False(t, be.busyUntil.After(after.Add(queued)))
	require.NoError(t, be.Sync())
	require.False(t, time.Now().Before(be.busyUntil), "Sync returns once the queue has drained")
}

func TestBadCostsAreRefused(t *testing.T) {
	for _, env := range [][2]string{
		{"VSERVE_SIMDEVICE_OP_US", "-1"},
		{"VSERVE_SIMDEVICE_TFLOPS", "0"},
		{"VSERVE_SIMDEVICE_TFLOPS", "fast"},
	} {
		t.Run(env[0]+"="+env[1], func(t *testing.T) {
			t.Setenv(env[0], env[1])
			_, err := New(kernel.Options{})
			require.ErrorContains(t, err, env[0])
		})
	}
}

func TestRegisteredAsSim(t *testing.T) {
	be, err := kernel.Open("sim", kernel.Options{})
	require.NoError(t, err)
	require.Equal(t, "sim", be.Name())
	require.NoError(t, be.Close())
}
