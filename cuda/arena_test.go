package cuda

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vserve/vserve/runtime/kernel"
)

func TestNumBlocks(t *testing.T) {
	const gib = int64(1) << 30
	block := BlockBytes(32, 8, 128, 16, 2) // Llama-3-8B, bf16: 2 MiB per block
	if block != 2<<20 {
		t.Fatalf("BlockBytes = %d, want %d", block, 2<<20)
	}
	tests := []struct {
		name    string
		plan    ArenaPlan
		want    int
		wantErr error
	}{
		{"h200 8B", ArenaPlan{TotalBytes: 141 * gib, Utilization: 0.9, WeightBytes: 16 * gib, ActivationBytes: 2 * gib, BlockBytes: block},
			int((141*gib*9/10 - 18*gib) / block), nil},
		{"others use memory", ArenaPlan{TotalBytes: 80 * gib, Utilization: 0.5, OtherBytes: 10 * gib, WeightBytes: 16 * gib, BlockBytes: block},
			int((40*gib - 26*gib) / block), nil},
		{"exactly two blocks", ArenaPlan{TotalBytes: 4 * block, Utilization: 0.5, BlockBytes: block}, 2, nil},
		{"one block is not enough", ArenaPlan{TotalBytes: 3 * block, Utilization: 0.5, BlockBytes: block}, 0, ErrNoKVMemory},
		{"weights do not fit", ArenaPlan{TotalBytes: 24 * gib, Utilization: 0.9, WeightBytes: 32 * gib, BlockBytes: block}, 0, ErrNoKVMemory},
		{"utilization zero", ArenaPlan{TotalBytes: gib, BlockBytes: block}, 0, nil},
		{"utilization above one", ArenaPlan{TotalBytes: gib, Utilization: 1.5, BlockBytes: block}, 0, nil},
		{"no block size", ArenaPlan{TotalBytes: gib, Utilization: 0.9}, 0, nil},
		{"negative weights", ArenaPlan{TotalBytes: gib, Utilization: 0.9, WeightBytes: -1, BlockBytes: block}, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NumBlocks(tc.plan)
			if tc.want == 0 {
				if err == nil {
					t.Fatalf("NumBlocks = %d, want an error", got)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NumBlocks = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestActivationBytesGrowsWithTokens(t *testing.T) {
	s := ActivationShape{StepShape: kernel.StepShape{MaxTokens: 512, MaxSeqs: 64, Hidden: 4096, Intermediate: 14336,
		NumHeads: 32, NumKVHeads: 8, HeadDim: 128, Vocab: 128256, MaxSeqLen: 8192}, DTypeSize: 2}
	a := ActivationBytes(s)
	s.MaxTokens *= 2
	b := ActivationBytes(s)
	// One layer's live activations per token: 3·4096 + 6144 + 4096 + 3·14336 elements of 2 bytes.
	perToken := int64(3*4096+6144+4096+3*14336) * 2
	if b-a != 512*perToken {
		t.Fatalf("doubling tokens added %d bytes, want %d", b-a, 512*perToken)
	}
	if a < 64<<20 {
		t.Fatalf("reservation %d below the fixed headroom", a)
	}
}

// Sizing the KV arena of Llama-3-8B (bf16) on an 141 GiB GPU at 90%
// utilisation, after 16 GiB of weights and the activation reservation.
func ExampleNumBlocks() {
	act := ActivationBytes(ActivationShape{StepShape: kernel.StepShape{MaxTokens: 8192, MaxSeqs: 256, Hidden: 4096,
		Intermediate: 14336, NumHeads: 32, NumKVHeads: 8, HeadDim: 128, Vocab: 128256, MaxSeqLen: 8192}, DTypeSize: 2})
	n, err := NumBlocks(ArenaPlan{
		TotalBytes:      141 << 30,
		Utilization:     0.9,
		WeightBytes:     16 << 30,
		ActivationBytes: act,
		BlockBytes:      BlockBytes(32, 8, 128, 16, 2),
	})
	fmt.Println(n, err)
	// Output: 55918 <nil>
}
