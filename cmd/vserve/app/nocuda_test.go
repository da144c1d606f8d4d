//go:build !cuda

package app

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDeviceCUDAWithoutCUDABuild(t *testing.T) {
	a, _ := startApp(t, "--device", "cuda")
	err := a.LoadErr()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "built without CUDA support")
	require.NoError(t, a.Shutdown(context.Background()))
}
