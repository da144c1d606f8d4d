package cpu

import (
	"fmt"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/sample"
)

// Sample draws one token per row of logits [len(b.Rows)×vocab] with the
// shared semantics of runtime/sample, on the host.
func (be *Backend) Sample(logits kernel.Buffer, vocab int, b *kernel.SampleBatch, res *kernel.SampleResult) error {
	if b == nil || res == nil {
		return fmt.Errorf("cpu: Sample without batch or result")
	}
	l, err := f32s(logits, len(b.Rows)*vocab, "Sample logits")
	if err != nil {
		return err
	}
	return sample.Sample(l, vocab, b, res)
}
