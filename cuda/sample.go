//go:build cuda || cudaemu

package cuda

import (
	"fmt"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/sample"
)

// Sample draws one token per row of logits [rows×vocab] (F32) on the
// device with runtime/sample's semantics (see kernels/sampling.cu) and
// downloads the results: one upload of the packed parameters, two kernels
// at most, one download.
func (be *Backend) Sample(logits kernel.Buffer, vocab int, b *kernel.SampleBatch, res *kernel.SampleResult) error {
	if b == nil || res == nil {
		return fmt.Errorf("%w: nil batch or result", sample.ErrInvalid)
	}
	plan, err := buildSamplePlan(vocab, b)
	if err != nil {
		return err
	}
	rows := len(b.Rows)
	lb, err := be.own("Sample", logits)
	if err != nil {
		return err
	}
	if lb.dt != kernel.F32 {
		return fmt.Errorf("%w: logits are %v, want f32", sample.ErrInvalid, lb.dt)
	}
	if lb.n < rows*vocab {
		return fmt.Errorf("%w: %d logits for %d rows of vocab %d", sample.ErrInvalid, lb.n, rows, vocab)
	}
	res.Reset(b.Rows)
	if rows == 0 {
		return nil
	}
	host, off := plan.pack()
	in, err := be.allocBuf(kernel.I32, len(host)/4)
	if err != nil {
		return err
	}
	defer be.Free(in)
	if err := be.uploadBytes(in.ptr, host); err != nil {
		return fmt.Errorf("cuda: Sample: upload: %w", err)
	}
	k := plan.maxK
	outWords := 5*rows + 2*rows*k
	out, err := be.allocBuf(kernel.I32, outWords)
	if err != nil {
		return err
	}
	defer be.Free(out)
	word := func(i int) uint64 { return out.ptr + uint64(4*i) }
	tok, status, lpStatus, rank, lp := word(0), word(rows), word(2*rows), word(3*rows), word(4*rows)
	topIDs, topLPs := word(5*rows), word(5*rows+rows*k)
	var work uint64
	if plan.modified {
		wb, err := be.allocBuf(kernel.F32, rows*vocab)
		if err != nil {
			return err
		}
		defer be.Free(wb)
		work = wb.ptr
	}
	at := func(i int) uint64 { return in.ptr + uint64(off[i]) }
	err = be.launch(be.fn.sampleRows, dim3{rows, 1, 1}, dim3{sampleThreads, 1, 1}, 0,
		bufArg(lb), ptrArg(work), i32Arg(vocab), ptrArg(at(0)), ptrArg(at(1)), ptrArg(at(2)), ptrArg(tok), ptrArg(status))
	if err != nil {
		return err
	}
	if plan.logprobs {
		err = be.launch(be.fn.rawLogprobs, dim3{rows, 1, 1}, dim3{logprobsThreads, 1, 1}, 0,
			bufArg(lb), i32Arg(vocab), ptrArg(tok), ptrArg(at(3)), i32Arg(k), ptrArg(lp), ptrArg(rank),
			ptrArg(topIDs), ptrArg(topLPs), ptrArg(lpStatus))
		if err != nil {
			return err
		}
	}
	raw := make([]byte, 4*outWords)
	if err := be.downloadBytes(raw, out.ptr); err != nil {
		return fmt.Errorf("cuda: Sample: %w", err)
	}
	return unpackSample(raw, rows, k, b.Rows, res)
}
