package cuda

import (
	"errors"
	"fmt"
	"math"

	"github.com/vserve/vserve/runtime/kernel"
)

// ArenaPlan is what the KV arena is sized from at start, so that running
// out of device memory happens then and not while serving.
type ArenaPlan struct {
	// TotalBytes is the device's memory (cuMemGetInfo total).
	TotalBytes int64
	// Utilization is --gpu-memory-utilization: the fraction of TotalBytes
	// this process may use, in (0, 1].
	Utilization float64
	// OtherBytes is memory already in use on the device by others when the
	// engine starts (total − free − what this process holds); it is
	// counted against the budget, as vLLM does.
	OtherBytes int64
	// WeightBytes is the model's weights on the device.
	WeightBytes int64
	// ActivationBytes is the worst-case activation reservation of one
	// step (see ActivationBytes).
	ActivationBytes int64
	// BlockBytes is one KV block over all layers, keys and values (see
	// BlockBytes).
	BlockBytes int64
}

// ErrNoKVMemory reports a plan that leaves no room for the KV cache.
var ErrNoKVMemory = errors.New("cuda: no device memory left for the KV cache")

// BlockBytes is the size of one KV block: keys and values of blockSize
// positions for every layer and KV head.
func BlockBytes(layers, kvHeads, headDim, blockSize, dtypeSize int) int64 {
	return 2 * int64(layers) * int64(kvHeads) * int64(headDim) * int64(blockSize) * int64(dtypeSize)
}

// ActivationShape is what bounds one step's activations: the step's shape
// and the activations' element size.
type ActivationShape struct {
	kernel.StepShape
	DTypeSize int // activation element size
}

// ActivationBytes is a worst-case reservation for one step: the live
// activations of a layer at MaxTokens tokens (residual, normed input,
// q/k/v, attention output, gate/up/act), the f32 logits and sampling
// scratch of MaxSeqs rows, the attention split partials, and 64 MiB of
// headroom for cuBLAS workspaces and the module images.
func ActivationBytes(s ActivationShape) int64 {
	t, e := int64(s.MaxTokens), int64(s.DTypeSize)
	qkv := int64(s.NumHeads+2*s.NumKVHeads) * int64(s.HeadDim)
	perToken := 3*int64(s.Hidden) + qkv + int64(s.NumHeads*s.HeadDim) + 3*int64(s.Intermediate)
	layer := t * perToken * e
	logits := int64(s.MaxSeqs) * int64(s.Vocab) * 4 * 3 // logits, gathered rows, sampling work copy
	splits := int64(s.MaxSeqs) * int64(s.NumHeads) * (int64(s.HeadDim) + 2) * 4 * maxSplits
	const headroom = 64 << 20
	return layer + logits + splits + headroom
}

// NumBlocks returns how many KV blocks fit the plan's budget:
// TotalBytes·Utilization − OtherBytes − WeightBytes − ActivationBytes,
// divided by BlockBytes. It fails when fewer than two blocks fit (the
// null block and one usable block).
func NumBlocks(p ArenaPlan) (int, error) {
	switch {
	case p.TotalBytes <= 0:
		return 0, fmt.Errorf("cuda: arena plan: total memory %d", p.TotalBytes)
	case !(p.Utilization > 0 && p.Utilization <= 1):
		return 0, fmt.Errorf("cuda: arena plan: gpu memory utilization %v not in (0, 1]", p.Utilization)
	case p.BlockBytes <= 0:
		return 0, fmt.Errorf("cuda: arena plan: block size %d bytes", p.BlockBytes)
	case p.OtherBytes < 0 || p.WeightBytes < 0 || p.ActivationBytes < 0:
		return 0, fmt.Errorf("cuda: arena plan: negative reservation")
	}
	budget := int64(math.Floor(float64(p.TotalBytes)*p.Utilization)) - p.OtherBytes - p.WeightBytes - p.ActivationBytes
	n := budget / p.BlockBytes
	if budget <= 0 || n < 2 {
		return 0, fmt.Errorf("%w: %d MiB budget (%.0f%% of %d MiB, less %d MiB used by others, %d MiB weights, %d MiB activations) holds %d blocks of %d KiB",
			ErrNoKVMemory, budget>>20, p.Utilization*100, p.TotalBytes>>20, p.OtherBytes>>20, p.WeightBytes>>20,
			p.ActivationBytes>>20, max(n, 0), p.BlockBytes>>10)
	}
	if n > math.MaxInt32 {
		n = math.MaxInt32
	}
	return int(n), nil
}

// maxSplits bounds the KV splits of one attention call (flash-decoding).
const maxSplits = 64
