// Package simdevice is a kernel backend that simulates an accelerator for
// measuring the host side of serving: the scheduler, the HTTP server,
// tokenization and observability, as a server with a GPU runs them. Its
// memory is host memory (the CPU backend's); its compute operations do no
// work on the host and only cost simulated device time, which the host
// waits for in Sync, as it waits for a GPU's stream. A CPU forward pass
// streams the weights through the caches of the cores that also run the
// server; a GPU's does not, and this backend does not either.
//
// Its logits are never computed: Sample returns a fixed function of each
// row's token counts, so the text is meaningless. It registers as "sim";
// vserve has it only when built with -tags simdevice.
//
// Each operation costs VSERVE_SIMDEVICE_OP_US microseconds (default 10, a
// kernel launch and a small kernel) plus its matrix multiplications at
// VSERVE_SIMDEVICE_TFLOPS (default 100).
package simdevice

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/kernel/cpu"
)

// Name is the name the backend registers under.
const Name = "sim"

func init() {
	kernel.Register(Name, func(o kernel.Options) (kernel.Backend, error) { return New(o) })
}

// Backend simulates a device; see the package documentation.
type Backend struct {
	host      *cpu.Backend // memory: allocation, uploads, downloads, host mapping
	opCost    time.Duration
	flopsPerS float64
	busyUntil time.Time // when the simulated queue drains
}

var (
	_ kernel.Backend    = (*Backend)(nil)
	_ kernel.HostMapper = (*Backend)(nil)
)

// New opens a simulated device with the costs from the environment.
func New(o kernel.Options) (*Backend, error) {
	opUS, err := envFloat("VSERVE_SIMDEVICE_OP_US", 10)
	if err != nil {
		return nil, err
	}
	tflops, err := envFloat("VSERVE_SIMDEVICE_TFLOPS", 100)
	if err != nil {
		return nil, err
	}
	if opUS < 0 || tflops <= 0 {
		return nil, fmt.Errorf("simdevice: VSERVE_SIMDEVICE_OP_US %v must be at least 0 and VSERVE_SIMDEVICE_TFLOPS %v above 0", opUS, tflops)
	}
	host, err := cpu.New(kernel.Options{Threads: 1})
	if err != nil {
		return nil, err
	}
	return &Backend{host: host, opCost: time.Duration(opUS * float64(time.Microsecond)), flopsPerS: tflops * 1e12}, nil
}

func envFloat(name string, def float64) (float64, error) {
	s := os.Getenv(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("simdevice: %s=%q: %w", name, s, err)
	}
	return v, nil
}

// launch queues an operation of flops floating-point operations.
func (be *Backend) launch(flops float64) error {
	cost := be.opCost + time.Duration(flops/be.flopsPerS*float64(time.Second))
	start := time.Now()
	if be.busyUntil.After(start) {
		start = be.busyUntil
	}
	be.busyUntil = start.Add(cost)
	return nil
}

func (be *Backend) Name() string               { return Name }
func (be *Backend) ComputeDType() kernel.DType { return kernel.F32 }
func (be *Backend) Close() error               { return be.host.Close() }

func (be *Backend) Alloc(dt kernel.DType, n int) (kernel.Buffer, error) { return be.host.Alloc(dt, n) }
func (be *Backend) Free(b kernel.Buffer)                                { be.host.Free(b) }
func (be *Backend) Upload(dst kernel.Buffer, src any) error             { return be.host.Upload(dst, src) }
func (be *Backend) Download(dst any, src kernel.Buffer) error           { return be.host.Download(dst, src) }
func (be *Backend) MapHost(dt kernel.DType, data []byte) (kernel.Buffer, error) {
	return be.host.MapHost(dt, data)
}

// Sync waits until the simulated queue has drained.
func (be *Backend) Sync() error {
	if d := time.Until(be.busyUntil); d > 0 {
		time.Sleep(d)
	}
	return nil
}

func (be *Backend) Embedding(out, table, ids kernel.Buffer, numTokens, dim int) error {
	return be.launch(0)
}

func (be *Backend) MatMul(out, x, w kernel.Buffer, m, n, k int) error {
	return be.launch(2 * float64(m) * float64(n) * float64(k))
}

func (be *Backend) AddBias(x, bias kernel.Buffer, rows, dim int) error { return be.launch(0) }
func (be *Backend) RMSNorm(out, x, w kernel.Buffer, rows, dim int, eps float32) error {
	return be.launch(0)
}
func (be *Backend) Add(out, a, b kernel.Buffer, n int) error                 { return be.launch(0) }
func (be *Backend) SiLUMul(out, gate, up kernel.Buffer, rows, dim int) error { return be.launch(0) }

func (be *Backend) RoPE(q, k, positions, invFreq kernel.Buffer, numTokens, numHeads, numKVHeads, headDim int) error {
	return be.launch(0)
}

func (be *Backend) ReshapeAndCache(key, value, kCache, vCache, slots kernel.Buffer, numTokens, numKVHeads, headDim, blockSize int) error {
	return be.launch(0)
}

// PagedAttention costs the products of every query with the longest
// context's keys and values (an upper bound: the lengths are device data).
func (be *Backend) PagedAttention(out, q, kCache, vCache kernel.Buffer, m *kernel.AttentionMeta) error {
	return be.launch(4 * float64(m.NumTokens) * float64(m.MaxSeqLen) * float64(m.NumHeads) * float64(m.HeadDim))
}

func (be *Backend) GatherRows(out, x, rows kernel.Buffer, numRows, dim int) error {
	return be.launch(0)
}

// Sample returns, for each row, a token of the upper half of the
// vocabulary (a tokenizer's merged pieces rather than its bytes and special
// ids) that depends only on the row's prompt and output lengths, with
// logprob 0 and rank 1.
func (be *Backend) Sample(logits kernel.Buffer, vocab int, b *kernel.SampleBatch, res *kernel.SampleResult) error {
	if vocab < 2 {
		return fmt.Errorf("simdevice: Sample over a vocabulary of %d", vocab)
	}
	res.Reset(b.Rows)
	for i := range b.Rows {
		tok := int32(vocab/2 + (31*len(b.OutputTokens[i])+len(b.PromptTokens[i]))%(vocab-vocab/2))
		res.Tokens[i], res.Ranks[i] = tok, 1
		for j := range res.TopIDs[i] {
			res.TopIDs[i][j] = int32(1 + (int(tok)+j)%(vocab-1))
		}
	}
	return be.launch(0)
}
