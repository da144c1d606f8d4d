package model

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/vserve/vserve/runtime/kernel"
)

// LoadOptions configure Load.
type LoadOptions struct {
	// Progress, when set, is called after each tensor is placed with the
	// bytes placed so far and the total.
	Progress func(done, total int64)
	// NoMap forces weights to be uploaded (copied) even when the backend can
	// wrap the memory-mapped bytes.
	NoMap bool
}

// layerWeights are one decoder layer's tensors on the backend.
type layerWeights struct {
	inputNorm, postNorm kernel.Buffer
	q, k, v, o          kernel.Buffer
	qBias, kBias, vBias kernel.Buffer // nil without QKVBias
	oBias               kernel.Buffer // nil without OBias
	gate, up, down      kernel.Buffer
}

// Model is a loaded Llama-family model on one backend.
type Model struct {
	Config *Config
	be     kernel.Backend
	dir    string

	weights *Weights // keeps the mappings alive for mapped buffers
	owned   []kernel.Buffer
	// MappedBytes and UploadedBytes say how the weights reached the backend.
	MappedBytes, UploadedBytes int64

	embed  kernel.Buffer
	layers []layerWeights
	norm   kernel.Buffer
	lmHead kernel.Buffer

	invFreq kernel.Buffer // F32 [HeadDim/2]
}

// Backend is the backend the model runs on.
func (m *Model) Backend() kernel.Backend { return m.be }

// Dir is the directory the model was loaded from.
func (m *Model) Dir() string { return m.dir }

// Load reads a Hugging Face model directory onto be. Weights in a dtype the
// backend uses as is are wrapped without a copy when be implements
// kernel.HostMapper; the rest are converted and uploaded.
func Load(dir string, be kernel.Backend, opts LoadOptions) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	w, err := OpenWeights(dir)
	if err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, be: be, dir: dir, weights: w}
	if err := m.place(opts); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// place puts the weights and the RoPE frequencies on the backend.
func (m *Model) place(opts LoadOptions) error {
	l := &loader{m: m, opts: opts}
	l.total = l.totalBytes()
	if err := l.loadAll(); err != nil {
		return err
	}
	cfg, be := m.Config, m.be
	inv := cfg.InvFreq()
	inv32 := make([]float32, len(inv))
	for i, f := range inv {
		inv32[i] = float32(f)
	}
	var err error
	if m.invFreq, err = m.alloc(kernel.F32, len(inv32)); err != nil {
		return err
	}
	if err := be.Upload(m.invFreq, inv32); err != nil {
		return fmt.Errorf("model: upload inv_freq: %w", err)
	}
	return nil
}

// Close frees the model's buffers and unmaps its files.
func (m *Model) Close() error {
	for _, b := range m.owned {
		m.be.Free(b)
	}
	m.owned = nil
	if m.weights == nil {
		return nil
	}
	err := m.weights.Close()
	m.weights = nil
	return err
}

func (m *Model) alloc(dt kernel.DType, n int) (kernel.Buffer, error) {
	b, err := m.be.Alloc(dt, n)
	if err != nil {
		return nil, fmt.Errorf("model: alloc %v[%d]: %w", dt, n, err)
	}
	m.owned = append(m.owned, b)
	return b, nil
}

type loader struct {
	m           *Model
	opts        LoadOptions
	done, total int64
}

// kind says how a tensor is used: matrices may stay in their stored dtype,
// vectors (norms, biases) are converted to the compute dtype.
type kind int

const (
	matrix kind = iota
	vector
)

func (l *loader) totalBytes() int64 {
	var n int64
	for _, f := range l.m.weights.files {
		for _, t := range f.Tensors {
			n += t.End - t.Begin
		}
	}
	return n
}

func (l *loader) loadAll() error {
	c := l.m.Config
	d, q, kv, f := c.HiddenSize, c.QDim(), c.KVDim(), c.IntermediateSize
	var err error
	get := func(name string, k kind, shape ...int) kernel.Buffer {
		if err != nil {
			return nil
		}
		var b kernel.Buffer
		b, err = l.tensor(name, k, shape)
		return b
	}
	m := l.m
	m.embed = get("model.embed_tokens.weight", matrix, c.VocabSize, d)
	if last := fmt.Sprintf("model.layers.%d.input_layernorm.weight", c.NumLayers-1); err == nil && !m.weights.Has(last) {
		// Before allocating per-layer state: a corrupt num_hidden_layers
		// must not cost memory in proportion to itself.
		return fmt.Errorf("model: %v: tensor %q missing (config.json: num_hidden_layers is %d)", m.weights.Files(), last, c.NumLayers)
	}
	m.layers = make([]layerWeights, c.NumLayers)
	for i := range m.layers {
		if err != nil {
			break
		}
		p := fmt.Sprintf("model.layers.%d.", i)
		lw := &m.layers[i]
		lw.inputNorm = get(p+"input_layernorm.weight", vector, d)
		lw.q = get(p+"self_attn.q_proj.weight", matrix, q, d)
		lw.k = get(p+"self_attn.k_proj.weight", matrix, kv, d)
		lw.v = get(p+"self_attn.v_proj.weight", matrix, kv, d)
		lw.o = get(p+"self_attn.o_proj.weight", matrix, d, q)
		if c.QKVBias {
			lw.qBias = get(p+"self_attn.q_proj.bias", vector, q)
			lw.kBias = get(p+"self_attn.k_proj.bias", vector, kv)
			lw.vBias = get(p+"self_attn.v_proj.bias", vector, kv)
		}
		if c.OBias {
			lw.oBias = get(p+"self_attn.o_proj.bias", vector, d)
		}
		lw.postNorm = get(p+"post_attention_layernorm.weight", vector, d)
		lw.gate = get(p+"mlp.gate_proj.weight", matrix, f, d)
		lw.up = get(p+"mlp.up_proj.weight", matrix, f, d)
		lw.down = get(p+"mlp.down_proj.weight", matrix, d, f)
	}
	m.norm = get("model.norm.weight", vector, d)
	switch {
	case err != nil:
	case c.TieWordEmbeddings:
		m.lmHead = m.embed
	case !m.weights.Has("lm_head.weight"):
		// Some checkpoints omit lm_head although the config says untied;
		// that is an error rather than a silent tie.
		err = fmt.Errorf("model: %v: tensor %q missing (tie_word_embeddings is false)", m.weights.Files(), "lm_head.weight")
	default:
		m.lmHead = get("lm_head.weight", matrix, c.VocabSize, d)
	}
	return err
}

// ErrMissingTensor is wrapped by the error for an absent tensor.
var ErrMissingTensor = errors.New("missing tensor")

// tensor finds, checks and places one tensor.
func (l *loader) tensor(name string, k kind, shape []int) (kernel.Buffer, error) {
	f, t, ok := l.m.weights.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("model: %v: tensor %q: %w", l.m.weights.Files(), name, ErrMissingTensor)
	}
	if !sameShape(t.Shape, shape) {
		return nil, fmt.Errorf("model: %s: tensor %q: shape %v, want %v", f.Path, name, t.Shape, shape)
	}
	dt, ok := kernelDType(t.DType)
	if !ok {
		return nil, fmt.Errorf("model: %s: tensor %q: unsupported dtype %s (F32, F16, BF16)", f.Path, name, t.DType)
	}
	raw := f.Bytes(t)
	b, err := l.place(dt, k, raw, int(t.NumElements()), t.DType)
	if err != nil {
		return nil, fmt.Errorf("model: %s: tensor %q: %w", f.Path, name, err)
	}
	l.done += int64(len(raw))
	if l.opts.Progress != nil {
		l.opts.Progress(l.done, l.total)
	}
	return b, nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// place puts raw tensor bytes on the backend: mapped without a copy when
// possible, else uploaded (converted to the compute dtype for vectors).
func (l *loader) place(dt kernel.DType, k kind, raw []byte, n int, stDType string) (kernel.Buffer, error) {
	m := l.m
	target := dt
	if k == vector {
		target = m.be.ComputeDType()
	}
	if target == dt && !l.opts.NoMap && littleEndian() && aligned(raw, dt.Size()) {
		if hm, ok := m.be.(kernel.HostMapper); ok {
			b, err := hm.MapHost(dt, raw)
			if err != nil {
				return nil, err
			}
			m.MappedBytes += int64(len(raw))
			return b, nil
		}
	}
	b, err := m.alloc(target, n)
	if err != nil {
		return nil, err
	}
	var host any
	switch {
	case target == dt && dt == kernel.F32:
		host, err = decodeF32(stDType, raw)
	case target == dt:
		host = rawU16(raw)
	default:
		var v []float32
		if v, err = decodeF32(stDType, raw); err == nil {
			host, err = encodeHost(target, v)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := m.be.Upload(b, host); err != nil {
		return nil, err
	}
	m.UploadedBytes += int64(len(raw))
	return b, nil
}

func aligned(b []byte, n int) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))%uintptr(n) == 0
}

func littleEndian() bool {
	switch runtime.GOARCH {
	case "amd64", "arm64", "386", "arm", "riscv64", "loong64", "mips64le", "mipsle", "ppc64le", "wasm":
		return true
	}
	return false
}
