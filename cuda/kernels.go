//go:build cuda || cudaemu

package cuda

import "fmt"

// decodeKernelName names the decode-path entry point for a cache dtype
// (index into decodeDTypes), a head dim and a group bound (see
// attention.cu's PAGED_DECODE_G).
func decodeKernelName(dt, headDim, group int) string {
	return fmt.Sprintf("paged_decode_%s_h%d_g%d", decodeDTypes[dt], headDim, group)
}

// decodeDTypes names the cache dtypes of the decode kernels (kernel.F32,
// F16, BF16); with decodeHeadDims and decodeGroups (plan.go) every
// combination is instantiated.
var decodeDTypes = [3]string{"f32", "f16", "bf16"}

// kernelNames lists the entry points of each kernel image (kernels/<family>.cu).
var kernelNames = map[string][]string{
	"activation":  {"silu_mul"},
	"attention":   attentionKernelNames(),
	"cache":       {"reshape_and_cache"},
	"elementwise": {"add", "add_bias", "convert", "read_probe"},
	"gather":      {"gather_rows"},
	"logprobs":    {"raw_logprobs"},
	"norm":        {"rmsnorm", "fused_add_rmsnorm"},
	"rope":        {"rope"},
	"sampling":    {"sample_rows"},
}

func attentionKernelNames() []string {
	names := []string{"paged_attention_f32", "paged_attention_f16", "paged_attention_bf16", "paged_attention_combine"}
	for dt := range decodeDTypes {
		for _, hd := range decodeHeadDims {
			for _, g := range decodeGroups {
				names = append(names, decodeKernelName(dt, hd, g))
			}
		}
	}
	return names
}

// kernels holds the loaded entry points.
type kernels struct {
	siluMul, add, addBias, convert, readProbe kernelFunc
	gatherRows, reshapeAndCache, rope         kernelFunc
	rmsnorm, fusedAddRMSNorm                  kernelFunc
	attention                                 [3]kernelFunc // by cache dtype: F32, F16, BF16
	attentionCombine                          kernelFunc
	decode                                    [3][2][4]kernelFunc // by cache dtype, head dim, group bound
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
	for dt := range decodeDTypes {
		for h, hd := range decodeHeadDims {
			for g, gb := range decodeGroups {
				targets = append(targets, struct {
					dst  *kernelFunc
					name string
				}{&k.decode[dt][h][g], decodeKernelName(dt, hd, gb)})
			}
		}
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
