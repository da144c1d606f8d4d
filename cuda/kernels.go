//go:build cuda || cudaemu

package cuda

import "fmt"

// kernelNames lists the entry points of each kernel image (kernels/<family>.cu).
var kernelNames = map[string][]string{
	"activation":  {"silu_mul"},
	"attention":   {"paged_attention_f32", "paged_attention_f16", "paged_attention_bf16", "paged_attention_combine"},
	"cache":       {"reshape_and_cache"},
	"elementwise": {"add", "add_bias", "convert", "read_probe"},
	"gather":      {"gather_rows"},
	"logprobs":    {"raw_logprobs"},
	"norm":        {"rmsnorm", "fused_add_rmsnorm"},
	"rope":        {"rope"},
	"sampling":    {"sample_rows"},
}

// kernels holds the loaded entry points.
type kernels struct {
	siluMul, add, addBias, convert, readProbe kernelFunc
	gatherRows, reshapeAndCache, rope         kernelFunc
	rmsnorm, fusedAddRMSNorm                  kernelFunc
	attention                                 [3]kernelFunc // by cache dtype: F32, F16, BF16
	attentionCombine                          kernelFunc
	sampleRows, rawLogprobs                   kernelFunc
}

func (k *kernels) bind(fns map[string]any) error {
	get := func(name string) (kernelFunc, error) {
		f, ok := fns[name]
		if !ok {
			return kernelFunc{}, fmt.Errorf("cuda: kernel %s missing from the embedded images (run go generate ./cuda/...)", name)
		}
		return kernelFunc{name: name, fn: f}, nil
	}
	targets := []struct {
		dst  *kernelFunc
		name string
	}{
		{&k.siluMul, "silu_mul"}, {&k.add, "add"}, {&k.addBias, "add_bias"}, {&k.convert, "convert"},
		{&k.readProbe, "read_probe"}, {&k.gatherRows, "gather_rows"}, {&k.reshapeAndCache, "reshape_and_cache"},
		{&k.rope, "rope"}, {&k.rmsnorm, "rmsnorm"}, {&k.fusedAddRMSNorm, "fused_add_rmsnorm"},
		{&k.attention[0], "paged_attention_f32"}, {&k.attention[1], "paged_attention_f16"},
		{&k.attention[2], "paged_attention_bf16"}, {&k.attentionCombine, "paged_attention_combine"},
		{&k.sampleRows, "sample_rows"}, {&k.rawLogprobs, "raw_logprobs"},
	}
	for _, t := range targets {
		f, err := get(t.name)
		if err != nil {
			return err
		}
		*t.dst = f
	}
	return nil
}
