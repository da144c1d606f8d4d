package model

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"

	"github.com/vserve/vserve/runtime/kernel"
)

// Spec describes a random-weight model for Generate.
type Spec struct {
	Name         string
	Architecture string // ArchLlama (default), ArchMistral or ArchQwen2
	Hidden       int
	Intermediate int
	Layers       int
	Heads        int
	KVHeads      int // 0: Heads
	HeadDim      int // 0: Hidden/Heads
	Vocab        int
	MaxPos       int
	Tied         bool
	DType        string // "f32" (default), "f16" or "bf16"
	RopeTheta    float64
	RopeScaling  *RopeScaling
	AttnBias     bool // Llama attention_bias (q/k/v/o biases); Qwen2 always has q/k/v biases
	RMSNormEps   float64
	// Shards > 1 writes model-0000i-of-0000n.safetensors files and an index.
	Shards int
}

// Named specs. The TinyStories shapes are those of llama2.c's checkpoints;
// Llama1B is a Llama-3.2-1B-class shape (generate it lazily: it is large).
var (
	SpecTiny = Spec{Name: "tiny", Hidden: 64, Intermediate: 172, Layers: 2, Heads: 8, KVHeads: 4,
		Vocab: 512, MaxPos: 256, Tied: true}
	SpecStories15M = Spec{Name: "15M", Hidden: 288, Intermediate: 768, Layers: 6, Heads: 6,
		Vocab: 32000, MaxPos: 1024, Tied: true}
	SpecStories42M = Spec{Name: "42M", Hidden: 512, Intermediate: 1376, Layers: 8, Heads: 8,
		Vocab: 32000, MaxPos: 1024, Tied: true}
	SpecStories110M = Spec{Name: "110M", Hidden: 768, Intermediate: 2048, Layers: 12, Heads: 12,
		Vocab: 32000, MaxPos: 1024, Tied: true}
	SpecLlama1B = Spec{Name: "1B", Hidden: 2048, Intermediate: 8192, Layers: 16, Heads: 32, KVHeads: 8,
		Vocab: 128256, MaxPos: 131072, Tied: true, DType: "bf16", RopeTheta: 500000,
		RopeScaling: &RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4,
			OriginalMaxPositionEmbeddings: 8192}}
)

// SpecByName returns a named spec: tiny, 15M, 42M, 110M or 1B.
func SpecByName(name string) (Spec, bool) {
	for _, s := range []Spec{SpecTiny, SpecStories15M, SpecStories42M, SpecStories110M, SpecLlama1B} {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

func (s Spec) withDefaults() Spec {
	if s.Architecture == "" {
		s.Architecture = ArchLlama
	}
	if s.KVHeads == 0 {
		s.KVHeads = s.Heads
	}
	if s.HeadDim == 0 && s.Heads > 0 {
		s.HeadDim = s.Hidden / s.Heads
	}
	if s.DType == "" {
		s.DType = "f32"
	}
	if s.RopeTheta == 0 {
		s.RopeTheta = 10000
	}
	if s.RMSNormEps == 0 {
		s.RMSNormEps = 1e-5
	}
	if s.MaxPos == 0 {
		s.MaxPos = 2048
	}
	return s
}

func (s Spec) validate() error {
	switch {
	case s.Hidden <= 0, s.Intermediate <= 0, s.Layers <= 0, s.Heads <= 0, s.KVHeads <= 0:
		return fmt.Errorf("model: spec %q: sizes must be positive", s.Name)
	case s.Heads%s.KVHeads != 0:
		return fmt.Errorf("model: spec %q: %d kv heads do not divide %d heads", s.Name, s.KVHeads, s.Heads)
	case s.HeadDim <= 0 || s.HeadDim%2 != 0:
		return fmt.Errorf("model: spec %q: head dim %d must be positive and even", s.Name, s.HeadDim)
	case s.Vocab < minVocab:
		return fmt.Errorf("model: spec %q: vocab %d is below %d (3 specials + 256 bytes)", s.Name, s.Vocab, minVocab)
	}
	switch s.DType {
	case "f32", "f16", "bf16":
	default:
		return fmt.Errorf("model: spec %q: dtype %q (f32, f16, bf16)", s.Name, s.DType)
	}
	switch s.Architecture {
	case ArchLlama, ArchMistral, ArchQwen2:
	default:
		return fmt.Errorf("model: spec %q: architecture %q: %w", s.Name, s.Architecture, ErrUnsupportedArch)
	}
	return nil
}

// Generate writes a Hugging Face model directory with seeded random weights:
// config.json, generation_config.json, model.safetensors (or shards with an
// index), tokenizer.json (SentencePiece-style BPE with byte fallback) and
// tokenizer_config.json. The same spec and seed give the same bytes.
func Generate(dir string, spec Spec, seed int64) error {
	s := spec.withDefaults()
	if err := s.validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if err := writeJSON(filepath.Join(dir, "config.json"), s.configJSON()); err != nil {
		return err
	}
	gen := map[string]any{"bos_token_id": 1, "eos_token_id": 2, "do_sample": false}
	if err := writeJSON(filepath.Join(dir, "generation_config.json"), gen); err != nil {
		return err
	}
	if err := s.writeWeights(dir, seed); err != nil {
		return err
	}
	return writeTokenizer(dir, s.Vocab, s.MaxPos)
}

// configParams is the parameter count of the spec's model.
func (s Spec) configParams() int64 {
	n := int64(0)
	for _, t := range s.tensors() {
		n += int64(numel(t.shape))
	}
	return n
}

func (s Spec) configJSON() map[string]any {
	modelType := map[string]string{ArchLlama: "llama", ArchMistral: "mistral", ArchQwen2: "qwen2"}[s.Architecture]
	dtype := map[string]string{"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[s.DType]
	c := map[string]any{
		"architectures":           []string{s.Architecture},
		"model_type":              modelType,
		"hidden_size":             s.Hidden,
		"intermediate_size":       s.Intermediate,
		"num_hidden_layers":       s.Layers,
		"num_attention_heads":     s.Heads,
		"num_key_value_heads":     s.KVHeads,
		"head_dim":                s.HeadDim,
		"vocab_size":              s.Vocab,
		"max_position_embeddings": s.MaxPos,
		"rms_norm_eps":            s.RMSNormEps,
		"rope_theta":              s.RopeTheta,
		"rope_scaling":            nil,
		"hidden_act":              "silu",
		"tie_word_embeddings":     s.Tied,
		"bos_token_id":            1,
		"eos_token_id":            2,
		"torch_dtype":             dtype,
	}
	if s.Architecture == ArchLlama {
		c["attention_bias"] = s.AttnBias
		c["mlp_bias"] = false
	}
	if r := s.RopeScaling; r != nil && r.Type != "" {
		rs := map[string]any{"rope_type": r.Type, "factor": r.Factor}
		if r.Type == "llama3" {
			rs["low_freq_factor"] = r.LowFreqFactor
			rs["high_freq_factor"] = r.HighFreqFactor
			rs["original_max_position_embeddings"] = r.OriginalMaxPositionEmbeddings
		}
		c["rope_scaling"] = rs
	}
	return c
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("model: %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	return nil
}

// genTensor is one tensor to generate: values are uniform in [-scale, scale]
// around center.
type genTensor struct {
	name          string
	shape         []int
	center, scale float32
}

func (s Spec) tensors() []genTensor {
	d, q, kv, f := s.Hidden, s.Heads*s.HeadDim, s.KVHeads*s.HeadDim, s.Intermediate
	lin := func(in int) float32 { return float32(math.Sqrt(3 / float64(in))) } // std 1/sqrt(in)
	ts := []genTensor{{"model.embed_tokens.weight", []int{s.Vocab, d}, 0, 0.5}}
	qkvBias := s.Architecture == ArchQwen2 || (s.Architecture == ArchLlama && s.AttnBias)
	oBias := s.Architecture == ArchLlama && s.AttnBias
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			genTensor{p + "input_layernorm.weight", []int{d}, 1, 0.1},
			genTensor{p + "self_attn.q_proj.weight", []int{q, d}, 0, lin(d)},
			genTensor{p + "self_attn.k_proj.weight", []int{kv, d}, 0, lin(d)},
			genTensor{p + "self_attn.v_proj.weight", []int{kv, d}, 0, lin(d)},
			genTensor{p + "self_attn.o_proj.weight", []int{d, q}, 0, lin(q)},
		)
		if qkvBias {
			ts = append(ts,
				genTensor{p + "self_attn.q_proj.bias", []int{q}, 0, 0.1},
				genTensor{p + "self_attn.k_proj.bias", []int{kv}, 0, 0.1},
				genTensor{p + "self_attn.v_proj.bias", []int{kv}, 0, 0.1})
		}
		if oBias {
			ts = append(ts, genTensor{p + "self_attn.o_proj.bias", []int{d}, 0, 0.1})
		}
		ts = append(ts,
			genTensor{p + "post_attention_layernorm.weight", []int{d}, 1, 0.1},
			genTensor{p + "mlp.gate_proj.weight", []int{f, d}, 0, lin(d)},
			genTensor{p + "mlp.up_proj.weight", []int{f, d}, 0, lin(d)},
			genTensor{p + "mlp.down_proj.weight", []int{d, f}, 0, lin(f)},
		)
	}
	ts = append(ts, genTensor{"model.norm.weight", []int{d}, 1, 0.1})
	if !s.Tied {
		ts = append(ts, genTensor{"lm_head.weight", []int{s.Vocab, d}, 0, lin(d)})
	}
	return ts
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func (s Spec) writeWeights(dir string, seed int64) error {
	ts := s.tensors()
	dtName := map[string]string{"f32": "F32", "f16": "F16", "bf16": "BF16"}[s.DType]
	size := map[string]int{"f32": 4, "f16": 2, "bf16": 2}[s.DType]
	shards := s.Shards
	if shards < 1 {
		shards = 1
	}
	if shards > len(ts) {
		shards = len(ts)
	}
	if shards == 1 {
		return writeSafetensors(filepath.Join(dir, "model.safetensors"), ts, 0, dtName, size, seed)
	}
	weightMap := map[string]string{}
	per := (len(ts) + shards - 1) / shards
	for i := 0; i < shards; i++ {
		lo, hi := i*per, min((i+1)*per, len(ts))
		if lo >= hi {
			break
		}
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, shards)
		if err := writeSafetensors(filepath.Join(dir, name), ts[lo:hi], lo, dtName, size, seed); err != nil {
			return err
		}
		for _, t := range ts[lo:hi] {
			weightMap[t.name] = name
		}
	}
	return writeJSON(filepath.Join(dir, "model.safetensors.index.json"),
		map[string]any{"metadata": map[string]any{}, "weight_map": weightMap})
}

// writeSafetensors writes ts (whose first has global index first) to path.
func writeSafetensors(path string, ts []genTensor, first int, dtName string, size int, seed int64) (err error) {
	header := map[string]any{"__metadata__": map[string]string{"format": "pt", "generator": "vserve model.Generate"}}
	var off int64
	for _, t := range ts {
		n := int64(numel(t.shape)) * int64(size)
		header[t.name] = map[string]any{"dtype": dtName, "shape": t.shape, "data_offsets": []int64{off, off + n}}
		off += n
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("model: %s: %w", path, err)
	}
	for (8+len(hj))%8 != 0 { // align the data section
		hj = append(hj, ' ')
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("model: %w", cerr)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hj)))
	w.Write(lenBuf[:])
	w.Write(hj)
	buf := make([]byte, 0, 1<<16)
	for i, t := range ts {
		r := rand.New(rand.NewPCG(uint64(seed), uint64(first+i)))
		n := numel(t.shape)
		for j := 0; j < n; j++ {
			v := t.center + t.scale*(2*r.Float32()-1)
			switch dtName {
			case "F32":
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			case "F16":
				buf = binary.LittleEndian.AppendUint16(buf, kernel.F32ToF16(v))
			default:
				buf = binary.LittleEndian.AppendUint16(buf, kernel.F32ToBF16(v))
			}
			if len(buf) >= 1<<16-8 {
				if _, err := w.Write(buf); err != nil {
					return fmt.Errorf("model: %s: %w", path, err)
				}
				buf = buf[:0]
			}
		}
	}
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("model: %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("model: %s: %w", path, err)
	}
	return nil
}

// sortedKeys is a helper for deterministic iteration.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var errVocab = errors.New("vocab too small")
