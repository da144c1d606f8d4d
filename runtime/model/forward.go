package model

import (
	"fmt"
	"math"

	"github.com/vserve/vserve/runtime/kernel"
)

// KVCache is the paged key/value cache of every layer: one arena for keys
// and one for values, each [layers][numBlocks][numKVHeads][blockSize][headDim]
// in the compute dtype. Block 0 is the null block.
type KVCache struct {
	NumBlocks, BlockSize int
	k, v                 kernel.Buffer
	kLayer, vLayer       []kernel.Buffer
	be                   kernel.Backend
}

// KVBytesPerBlock is the memory one KV block takes over all layers (keys
// and values), so the engine can size NumBlocks from a memory budget.
func (m *Model) KVBytesPerBlock(blockSize int) int64 {
	c := m.Config
	return 2 * int64(c.NumLayers) * int64(blockSize) * int64(c.KVDim()) * int64(m.be.ComputeDType().Size())
}

// NewKVCache allocates the cache arenas on the model's backend.
func (m *Model) NewKVCache(numBlocks, blockSize int) (*KVCache, error) {
	if numBlocks < 2 || blockSize <= 0 {
		return nil, fmt.Errorf("model: KV cache needs at least 2 blocks (one is the null block) and a positive block size, got %d×%d", numBlocks, blockSize)
	}
	c := m.Config
	perLayer := numBlocks * blockSize * c.KVDim()
	total := perLayer * c.NumLayers
	if total/c.NumLayers != perLayer || total < 0 {
		return nil, fmt.Errorf("model: KV cache of %d blocks overflows", numBlocks)
	}
	kv := &KVCache{NumBlocks: numBlocks, BlockSize: blockSize, be: m.be}
	var err error
	dt := m.be.ComputeDType()
	if kv.k, err = m.be.Alloc(dt, total); err != nil {
		return nil, fmt.Errorf("model: alloc KV keys (%d blocks): %w", numBlocks, err)
	}
	if kv.v, err = m.be.Alloc(dt, total); err != nil {
		m.be.Free(kv.k)
		return nil, fmt.Errorf("model: alloc KV values (%d blocks): %w", numBlocks, err)
	}
	for l := 0; l < c.NumLayers; l++ {
		kv.kLayer = append(kv.kLayer, kv.k.Slice(l*perLayer, perLayer))
		kv.vLayer = append(kv.vLayer, kv.v.Slice(l*perLayer, perLayer))
	}
	return kv, nil
}

// Free releases the arenas.
func (kv *KVCache) Free() {
	if kv.k != nil {
		kv.be.Free(kv.k)
		kv.be.Free(kv.v)
		kv.k, kv.v, kv.kLayer, kv.vLayer = nil, nil, nil, nil
	}
}

// Workspace holds the activations of one step, allocated once for the
// largest step (MaxTokens tokens, MaxLogits sampled rows) and reused.
type Workspace struct {
	MaxTokens, MaxLogits int

	x, xb, q, k, v, att, proj kernel.Buffer // [T×…]
	gate, up, act             kernel.Buffer // [T×intermediate]
	sel, selNorm              kernel.Buffer // [S×hidden]
	logits                    kernel.Buffer // F32 [S×vocab]
	all                       []kernel.Buffer
	be                        kernel.Backend
}

// NewWorkspace allocates activations for steps of at most maxTokens tokens
// and maxLogits rows of logits.
func (m *Model) NewWorkspace(maxTokens, maxLogits int) (*Workspace, error) {
	if maxTokens <= 0 || maxLogits <= 0 || maxLogits > maxTokens {
		return nil, fmt.Errorf("model: workspace needs 0 < maxLogits (%d) <= maxTokens (%d)", maxLogits, maxTokens)
	}
	c := m.Config
	ws := &Workspace{MaxTokens: maxTokens, MaxLogits: maxLogits, be: m.be}
	dt := m.be.ComputeDType()
	var err error
	alloc := func(dt kernel.DType, n int) kernel.Buffer {
		if err != nil {
			return nil
		}
		var b kernel.Buffer
		if b, err = m.be.Alloc(dt, n); err == nil {
			ws.all = append(ws.all, b)
		}
		return b
	}
	T, S := maxTokens, maxLogits
	ws.x = alloc(dt, T*c.HiddenSize)
	ws.xb = alloc(dt, T*c.HiddenSize)
	ws.proj = alloc(dt, T*c.HiddenSize)
	ws.q = alloc(dt, T*c.QDim())
	ws.att = alloc(dt, T*c.QDim())
	ws.k = alloc(dt, T*c.KVDim())
	ws.v = alloc(dt, T*c.KVDim())
	ws.gate = alloc(dt, T*c.IntermediateSize)
	ws.up = alloc(dt, T*c.IntermediateSize)
	ws.act = alloc(dt, T*c.IntermediateSize)
	ws.sel = alloc(dt, S*c.HiddenSize)
	ws.selNorm = alloc(dt, S*c.HiddenSize)
	ws.logits = alloc(kernel.F32, S*c.VocabSize)
	if err != nil {
		ws.Free()
		return nil, fmt.Errorf("model: alloc workspace for %d tokens: %w", maxTokens, err)
	}
	return ws, nil
}

// Free releases the activations.
func (ws *Workspace) Free() {
	for _, b := range ws.all {
		ws.be.Free(b)
	}
	ws.all = nil
}

// Batch is one step's flat input, already on the backend.
type Batch struct {
	NumTokens   int
	TokenIDs    kernel.Buffer // I32 [NumTokens]
	Positions   kernel.Buffer // I32 [NumTokens]
	SlotMapping kernel.Buffer // I32 [NumTokens]
	// Attn describes the sequences; Forward fills the model-dependent
	// fields (heads, head size, scale, block size).
	Attn kernel.AttentionMeta
	// LogitRows are the rows of the flat batch whose logits are computed.
	NumLogits int
	LogitRows kernel.Buffer // I32 [NumLogits]
}

// Forward runs the model over b, storing keys and values in kv, and returns
// the logits [b.NumLogits × vocab] (F32, a view into ws valid until the
// next Forward). Ops may still be running: call the backend's Sync.
func (m *Model) Forward(ws *Workspace, kv *KVCache, b *Batch) (kernel.Buffer, error) {
	c := m.Config
	T, S := b.NumTokens, b.NumLogits
	if T <= 0 || T > ws.MaxTokens || S < 0 || S > ws.MaxLogits {
		return nil, fmt.Errorf("model: batch of %d tokens / %d logits exceeds the workspace (%d / %d)", T, S, ws.MaxTokens, ws.MaxLogits)
	}
	meta := b.Attn
	meta.NumTokens = T
	meta.BlockSize = kv.BlockSize
	meta.NumHeads, meta.NumKVHeads, meta.HeadDim = c.NumHeads, c.NumKVHeads, c.HeadDim
	meta.Scale = float32(1 / math.Sqrt(float64(c.HeadDim)))
	f := &forward{m: m, be: m.be, c: c, T: T}
	f.views(ws)
	f.do(func() error { return m.be.Embedding(f.x, m.embed, b.TokenIDs, T, c.HiddenSize) })
	for l := range m.layers {
		f.layer(&m.layers[l], kv.kLayer[l], kv.vLayer[l], b, &meta)
	}
	if S == 0 || f.err != nil {
		return nil, f.err
	}
	return m.head(ws, f.x, b.LogitRows, S)
}

// Logits computes the logits of n more rows (I32 indices into the flat
// batch) of the latest Forward's final hidden states, for example the
// prompt positions of a request that asked for prompt logprobs. It reuses
// the workspace's logits buffer, so the logits an earlier call or Forward
// returned are overwritten; n is at most ws.MaxLogits (call it in chunks).
// The rows must be below that Forward's token count.
func (m *Model) Logits(ws *Workspace, rows kernel.Buffer, n int) (kernel.Buffer, error) {
	if n <= 0 || n > ws.MaxLogits {
		return nil, fmt.Errorf("model: %d logit rows outside (0, %d]", n, ws.MaxLogits)
	}
	return m.head(ws, ws.x, rows, n)
}

// head gathers n rows of the final hidden states x, normalises them and
// applies the LM head: the logits [n × vocab], a view into ws.
func (m *Model) head(ws *Workspace, x, rows kernel.Buffer, n int) (kernel.Buffer, error) {
	c := m.Config
	sel, selNorm := ws.sel.Slice(0, n*c.HiddenSize), ws.selNorm.Slice(0, n*c.HiddenSize)
	logits := ws.logits.Slice(0, n*c.VocabSize)
	eps := float32(c.RMSNormEps)
	f := &forward{m: m, be: m.be, c: c}
	f.do(func() error { return m.be.GatherRows(sel, x, rows, n, c.HiddenSize) })
	f.do(func() error { return m.be.RMSNorm(selNorm, sel, m.norm, n, c.HiddenSize, eps) })
	f.do(func() error { return m.be.MatMul(logits, selNorm, m.lmHead, n, c.VocabSize, c.HiddenSize) })
	if f.err != nil {
		return nil, f.err
	}
	return logits, nil
}

// forward holds one Forward call's views and first error.
type forward struct {
	m                         *Model
	be                        kernel.Backend
	c                         *Config
	T                         int
	x, xb, q, k, v, att, proj kernel.Buffer
	gate, up, act             kernel.Buffer
	err                       error
}

func (f *forward) views(ws *Workspace) {
	T, c := f.T, f.c
	f.x, f.xb, f.proj = ws.x.Slice(0, T*c.HiddenSize), ws.xb.Slice(0, T*c.HiddenSize), ws.proj.Slice(0, T*c.HiddenSize)
	f.q, f.att = ws.q.Slice(0, T*c.QDim()), ws.att.Slice(0, T*c.QDim())
	f.k, f.v = ws.k.Slice(0, T*c.KVDim()), ws.v.Slice(0, T*c.KVDim())
	n := T * c.IntermediateSize
	f.gate, f.up, f.act = ws.gate.Slice(0, n), ws.up.Slice(0, n), ws.act.Slice(0, n)
}

func (f *forward) do(op func() error) {
	if f.err == nil {
		if err := op(); err != nil {
			f.err = fmt.Errorf("model: forward: %w", err)
		}
	}
}

func (f *forward) layer(lw *layerWeights, kCache, vCache kernel.Buffer, b *Batch, meta *kernel.AttentionMeta) {
	be, c, T := f.be, f.c, f.T
	d, qd, kvd, ff := c.HiddenSize, c.QDim(), c.KVDim(), c.IntermediateSize
	eps := float32(c.RMSNormEps)
	// Attention block.
	f.do(func() error { return be.RMSNorm(f.xb, f.x, lw.inputNorm, T, d, eps) })
	f.do(func() error { return be.MatMul(f.q, f.xb, lw.q, T, qd, d) })
	f.do(func() error { return be.MatMul(f.k, f.xb, lw.k, T, kvd, d) })
	f.do(func() error { return be.MatMul(f.v, f.xb, lw.v, T, kvd, d) })
	if lw.qBias != nil {
		f.do(func() error { return be.AddBias(f.q, lw.qBias, T, qd) })
		f.do(func() error { return be.AddBias(f.k, lw.kBias, T, kvd) })
		f.do(func() error { return be.AddBias(f.v, lw.vBias, T, kvd) })
	}
	f.do(func() error {
		return be.RoPE(f.q, f.k, b.Positions, f.m.invFreq, T, c.NumHeads, c.NumKVHeads, c.HeadDim)
	})
	f.do(func() error {
		return be.ReshapeAndCache(f.k, f.v, kCache, vCache, b.SlotMapping, T, c.NumKVHeads, c.HeadDim, meta.BlockSize)
	})
	f.do(func() error { return be.PagedAttention(f.att, f.q, kCache, vCache, meta) })
	f.do(func() error { return be.MatMul(f.proj, f.att, lw.o, T, d, qd) })
	if lw.oBias != nil {
		f.do(func() error { return be.AddBias(f.proj, lw.oBias, T, d) })
	}
	f.do(func() error { return be.Add(f.x, f.x, f.proj, T*d) })
	// MLP block.
	f.do(func() error { return be.RMSNorm(f.xb, f.x, lw.postNorm, T, d, eps) })
	f.do(func() error { return be.MatMul(f.gate, f.xb, lw.gate, T, ff, d) })
	f.do(func() error { return be.MatMul(f.up, f.xb, lw.up, T, ff, d) })
	f.do(func() error { return be.SiLUMul(f.act, f.gate, f.up, T, ff) })
	f.do(func() error { return be.MatMul(f.proj, f.act, lw.down, T, d, ff) })
	f.do(func() error { return be.Add(f.x, f.x, f.proj, T*d) })
}
