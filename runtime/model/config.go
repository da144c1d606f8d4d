package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// Supported architectures (config.json "architectures").
const (
	ArchLlama   = "LlamaForCausalLM"
	ArchMistral = "MistralForCausalLM"
	ArchQwen2   = "Qwen2ForCausalLM"
)

// RopeScaling is config.json's rope_scaling. Type "" means none.
type RopeScaling struct {
	Type                          string  // "linear" or "llama3"
	Factor                        float64 // all types
	LowFreqFactor, HighFreqFactor float64 // llama3
	OriginalMaxPositionEmbeddings int     // llama3
}

// Config is the part of a Hugging Face config.json that the Llama-family
// forward pass needs, validated.
type Config struct {
	Architecture          string
	ModelType             string
	HiddenSize            int
	IntermediateSize      int
	NumLayers             int
	NumHeads              int
	NumKVHeads            int
	HeadDim               int
	VocabSize             int
	MaxPositionEmbeddings int
	RMSNormEps            float64
	RopeTheta             float64
	RopeScaling           RopeScaling
	TieWordEmbeddings     bool
	// QKVBias: q/k/v projections have biases (always for Qwen2; Llama's
	// attention_bias). OBias: o_proj has a bias (Llama's attention_bias).
	QKVBias, OBias bool
	TorchDType     string
	// SlidingWindow is the attention window of Mistral (sliding_window) or
	// Qwen2 (with use_sliding_window); 0: none. The forward pass attends over
	// the full context, which equals windowed attention only for sequences
	// no longer than the window, so the runner caps MaxModelLen at it.
	SlidingWindow int
	BOSTokenIDs   []int32
	EOSTokenIDs   []int32
	// GenerationDefaults are the sampling defaults of generation_config.json.
	GenerationDefaults GenerationDefaults
}

// GenerationDefaults are the sampling parameters a model's
// generation_config.json sets to other values than Hugging Face's defaults
// (temperature 1, top_p 1, top_k 50, repetition_penalty 1, no min_p, no
// max_new_tokens): what vLLM's --generation-config auto takes as the
// defaults of requests that leave them unset. Nil: not set.
type GenerationDefaults struct {
	Temperature, TopP, MinP, RepetitionPenalty *float64
	TopK                                       *int
	MaxNewTokens                               *int
}

// rawConfig mirrors config.json; pointers tell absent fields from zero.
type rawConfig struct {
	Architectures         []string        `json:"architectures"`
	ModelType             string          `json:"model_type"`
	HiddenSize            *int            `json:"hidden_size"`
	IntermediateSize      *int            `json:"intermediate_size"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumKeyValueHeads      *int            `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	VocabSize             *int            `json:"vocab_size"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         *bool           `json:"attention_bias"`
	MLPBias               *bool           `json:"mlp_bias"`
	HiddenAct             string          `json:"hidden_act"`
	TorchDType            string          `json:"torch_dtype"`
	SlidingWindow         json.RawMessage `json:"sliding_window"`
	UseSlidingWindow      *bool           `json:"use_sliding_window"`
	BOSTokenID            json.RawMessage `json:"bos_token_id"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`
}

// Bounds on config sizes: far above any real model, low enough that a
// corrupt config cannot make the loader allocate absurd amounts.
const (
	maxDim     = 1 << 24
	maxHeadDim = 1 << 12
)

// FieldError says which field of which file is wrong.
type FieldError struct {
	File, Field string
	Err         error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: field %s: %v", e.File, e.Field, e.Err)
}
func (e *FieldError) Unwrap() error { return e.Err }

// ErrUnsupportedArch is wrapped by the error for an architecture this
// package cannot run.
var ErrUnsupportedArch = errors.New("unsupported architecture")

// LoadConfig reads dir/config.json, and eos_token_id from
// dir/generation_config.json when that file exists (it takes precedence, as
// in Hugging Face generation).
func LoadConfig(dir string) (*Config, error) {
	name := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	cfg, err := ParseConfig(name, data)
	if err != nil {
		return nil, err
	}
	gen := filepath.Join(dir, "generation_config.json")
	if gdata, err := os.ReadFile(gen); err == nil {
		if err := cfg.mergeGenerationConfig(gen, gdata); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// ParseConfig parses and validates a config.json; file names it in errors.
func ParseConfig(file string, data []byte) (*Config, error) {
	var raw rawConfig
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("model: %s: bad JSON: %w", file, err)
	}
	fe := func(field string, format string, args ...any) error {
		return &FieldError{File: file, Field: field, Err: fmt.Errorf(format, args...)}
	}
	c := &Config{ModelType: raw.ModelType, TorchDType: raw.TorchDType}
	if err := c.setArchitecture(raw.Architectures, fe); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		src  *int
		dst  *int
	}{
		{"hidden_size", raw.HiddenSize, &c.HiddenSize},
		{"intermediate_size", raw.IntermediateSize, &c.IntermediateSize},
		{"num_hidden_layers", raw.NumHiddenLayers, &c.NumLayers},
		{"num_attention_heads", raw.NumAttentionHeads, &c.NumHeads},
		{"vocab_size", raw.VocabSize, &c.VocabSize},
	} {
		if f.src == nil {
			return nil, fe(f.name, "missing")
		}
		if *f.src <= 0 || *f.src > maxDim {
			return nil, fe(f.name, "must be in [1, %d], got %d", maxDim, *f.src)
		}
		*f.dst = *f.src
	}
	c.NumKVHeads = c.NumHeads
	if raw.NumKeyValueHeads != nil {
		c.NumKVHeads = *raw.NumKeyValueHeads
	}
	if c.NumKVHeads <= 0 || c.NumHeads%c.NumKVHeads != 0 {
		return nil, fe("num_key_value_heads", "%d does not divide num_attention_heads %d", c.NumKVHeads, c.NumHeads)
	}
	if raw.HeadDim != nil {
		c.HeadDim = *raw.HeadDim
	} else {
		if c.HiddenSize%c.NumHeads != 0 {
			return nil, fe("head_dim", "absent and hidden_size %d is not a multiple of num_attention_heads %d", c.HiddenSize, c.NumHeads)
		}
		c.HeadDim = c.HiddenSize / c.NumHeads
	}
	if c.HeadDim <= 0 || c.HeadDim%2 != 0 || c.HeadDim > maxHeadDim {
		return nil, fe("head_dim", "must be positive, even and at most %d, got %d", maxHeadDim, c.HeadDim)
	}
	c.MaxPositionEmbeddings = 2048
	if raw.MaxPositionEmbeddings != nil {
		if *raw.MaxPositionEmbeddings <= 0 || *raw.MaxPositionEmbeddings > maxDim {
			return nil, fe("max_position_embeddings", "must be in [1, %d], got %d", maxDim, *raw.MaxPositionEmbeddings)
		}
		c.MaxPositionEmbeddings = *raw.MaxPositionEmbeddings
	}
	c.RMSNormEps = 1e-6
	if raw.RMSNormEps != nil {
		if *raw.RMSNormEps <= 0 || *raw.RMSNormEps >= 1 {
			return nil, fe("rms_norm_eps", "must be in (0, 1), got %g", *raw.RMSNormEps)
		}
		c.RMSNormEps = *raw.RMSNormEps
	}
	c.RopeTheta = 10000
	if raw.RopeTheta != nil {
		if *raw.RopeTheta <= 0 {
			return nil, fe("rope_theta", "must be positive, got %g", *raw.RopeTheta)
		}
		c.RopeTheta = *raw.RopeTheta
	}
	rs, err := parseRopeScaling(raw.RopeScaling)
	if err != nil {
		return nil, &FieldError{File: file, Field: "rope_scaling", Err: err}
	}
	c.RopeScaling = rs
	// Llama and Mistral default to untied embeddings, Qwen2 configs say so.
	if raw.TieWordEmbeddings != nil {
		c.TieWordEmbeddings = *raw.TieWordEmbeddings
	}
	switch c.Architecture {
	case ArchQwen2:
		c.QKVBias = true
	default:
		if raw.AttentionBias != nil && *raw.AttentionBias {
			c.QKVBias, c.OBias = true, true
		}
	}
	if raw.MLPBias != nil && *raw.MLPBias {
		return nil, fe("mlp_bias", "MLP biases are not supported")
	}
	if raw.HiddenAct != "" && raw.HiddenAct != "silu" {
		return nil, fe("hidden_act", "only silu is supported, got %q", raw.HiddenAct)
	}
	switch raw.TorchDType {
	case "", "float32", "float16", "bfloat16":
	default:
		return nil, fe("torch_dtype", "unsupported %q (want float32, float16 or bfloat16)", raw.TorchDType)
	}
	if sw, ok, err := optionalInt(raw.SlidingWindow); err != nil {
		return nil, fe("sliding_window", "%v", err)
	} else if ok && slidingWindowActive(c.Architecture, raw.UseSlidingWindow) {
		c.SlidingWindow = sw
	}
	if c.BOSTokenIDs, err = tokenIDs(raw.BOSTokenID); err != nil {
		return nil, fe("bos_token_id", "%v", err)
	}
	if c.EOSTokenIDs, err = tokenIDs(raw.EOSTokenID); err != nil {
		return nil, fe("eos_token_id", "%v", err)
	}
	for _, id := range append(append([]int32{}, c.BOSTokenIDs...), c.EOSTokenIDs...) {
		if int(id) >= c.VocabSize || id < 0 {
			return nil, fe("bos_token_id/eos_token_id", "id %d outside vocab_size %d", id, c.VocabSize)
		}
	}
	return c, nil
}

// slidingWindowActive: Mistral applies sliding_window whenever it is set;
// Qwen2 only with use_sliding_window true.
func slidingWindowActive(arch string, use *bool) bool {
	switch arch {
	case ArchMistral:
		return use == nil || *use
	case ArchQwen2:
		return use != nil && *use
	}
	return false
}

func (c *Config) setArchitecture(archs []string, fe func(string, string, ...any) error) error {
	if len(archs) == 0 {
		return fe("architectures", "missing")
	}
	for _, a := range archs {
		switch a {
		case ArchLlama, ArchMistral, ArchQwen2:
			c.Architecture = a
			return nil
		}
	}
	return fe("architectures", "%w %v (supported: %s, %s, %s)",
		ErrUnsupportedArch, archs, ArchLlama, ArchMistral, ArchQwen2)
}

func (c *Config) mergeGenerationConfig(file string, data []byte) error {
	var raw struct {
		EOSTokenID        json.RawMessage `json:"eos_token_id"`
		Temperature       *float64        `json:"temperature"`
		TopP              *float64        `json:"top_p"`
		TopK              *int            `json:"top_k"`
		MinP              *float64        `json:"min_p"`
		RepetitionPenalty *float64        `json:"repetition_penalty"`
		MaxNewTokens      *int            `json:"max_new_tokens"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("model: %s: bad JSON: %w", file, err)
	}
	d, err := generationDefaults(file, raw.Temperature, raw.TopP, raw.MinP, raw.RepetitionPenalty, raw.TopK, raw.MaxNewTokens)
	if err != nil {
		return err
	}
	c.GenerationDefaults = d
	ids, err := tokenIDs(raw.EOSTokenID)
	if err != nil {
		return &FieldError{File: file, Field: "eos_token_id", Err: err}
	}
	for _, id := range ids {
		if int(id) >= c.VocabSize || id < 0 {
			return &FieldError{File: file, Field: "eos_token_id", Err: fmt.Errorf("id %d outside vocab_size %d", id, c.VocabSize)}
		}
	}
	if len(ids) > 0 {
		c.EOSTokenIDs = ids
	}
	return nil
}

// generationDefaults validates the sampling fields of generation_config.json
// and keeps those that differ from Hugging Face's defaults.
func generationDefaults(file string, temperature, topP, minP, repetition *float64, topK, maxNew *int) (GenerationDefaults, error) {
	var d GenerationDefaults
	for _, f := range []struct {
		name       string
		v          *float64
		lo, hi, hf float64 // valid range; Hugging Face's default (NaN: none)
		dst        **float64
	}{
		{"temperature", temperature, 0, math.MaxFloat32, 1, &d.Temperature},
		{"top_p", topP, math.SmallestNonzeroFloat32, 1, 1, &d.TopP},
		{"min_p", minP, 0, 1, math.NaN(), &d.MinP},
		{"repetition_penalty", repetition, math.SmallestNonzeroFloat32, math.MaxFloat32, 1, &d.RepetitionPenalty},
	} {
		if f.v == nil {
			continue
		}
		if math.IsNaN(*f.v) || *f.v < f.lo || *f.v > f.hi {
			return d, &FieldError{File: file, Field: f.name, Err: fmt.Errorf("%v is outside [%v, %v]", *f.v, f.lo, f.hi)}
		}
		if *f.v != f.hf {
			*f.dst = f.v
		}
	}
	if topK != nil {
		if *topK < -1 {
			return d, &FieldError{File: file, Field: "top_k", Err: fmt.Errorf("%d: want -1, 0 (off) or a positive count", *topK)}
		}
		if *topK != 50 {
			d.TopK = topK
		}
	}
	if maxNew != nil {
		if *maxNew < 1 {
			return d, &FieldError{File: file, Field: "max_new_tokens", Err: fmt.Errorf("%d: want at least 1", *maxNew)}
		}
		d.MaxNewTokens = maxNew
	}
	return d, nil
}

// tokenIDs reads null, an integer or a list of integers.
func tokenIDs(raw json.RawMessage) ([]int32, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one int64
	if err := json.Unmarshal(raw, &one); err == nil {
		if one < 0 || one > math.MaxInt32 {
			return nil, fmt.Errorf("id %d out of range", one)
		}
		return []int32{int32(one)}, nil
	}
	var many []int64
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("want an integer or a list of integers, got %s", raw)
	}
	ids := make([]int32, len(many))
	for i, v := range many {
		if v < 0 || v > math.MaxInt32 {
			return nil, fmt.Errorf("id %d out of range", v)
		}
		ids[i] = int32(v)
	}
	return ids, nil
}

func optionalInt(raw json.RawMessage) (int, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	var v int
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, false, fmt.Errorf("want an integer, got %s", raw)
	}
	if v <= 0 {
		return 0, false, fmt.Errorf("must be positive, got %d", v)
	}
	return v, true, nil
}

func parseRopeScaling(raw json.RawMessage) (RopeScaling, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return RopeScaling{}, nil
	}
	var r struct {
		RopeType                      string   `json:"rope_type"`
		Type                          string   `json:"type"` // older configs
		Factor                        *float64 `json:"factor"`
		LowFreqFactor                 *float64 `json:"low_freq_factor"`
		HighFreqFactor                *float64 `json:"high_freq_factor"`
		OriginalMaxPositionEmbeddings *int     `json:"original_max_position_embeddings"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return RopeScaling{}, fmt.Errorf("bad JSON: %w", err)
	}
	typ := r.RopeType
	if typ == "" {
		typ = r.Type
	}
	switch typ {
	case "default", "":
		return RopeScaling{}, nil
	case "linear", "llama3":
	default:
		return RopeScaling{}, fmt.Errorf("rope_type %q is not supported (default, linear, llama3)", typ)
	}
	if r.Factor == nil || *r.Factor <= 0 {
		return RopeScaling{}, fmt.Errorf("factor must be present and positive")
	}
	s := RopeScaling{Type: typ, Factor: *r.Factor}
	if typ == "llama3" {
		if r.LowFreqFactor == nil || r.HighFreqFactor == nil || r.OriginalMaxPositionEmbeddings == nil {
			return RopeScaling{}, fmt.Errorf("llama3 needs low_freq_factor, high_freq_factor and original_max_position_embeddings")
		}
		s.LowFreqFactor, s.HighFreqFactor = *r.LowFreqFactor, *r.HighFreqFactor
		s.OriginalMaxPositionEmbeddings = *r.OriginalMaxPositionEmbeddings
		if s.LowFreqFactor <= 0 || s.HighFreqFactor <= s.LowFreqFactor || s.OriginalMaxPositionEmbeddings <= 0 {
			return RopeScaling{}, fmt.Errorf("llama3 needs 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0")
		}
	}
	return s, nil
}

// InvFreq returns RoPE's inverse frequencies [HeadDim/2] with the scaling
// applied, computed in float64.
func (c *Config) InvFreq() []float64 {
	half := c.HeadDim / 2
	inv := make([]float64, half)
	for i := range inv {
		inv[i] = 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim))
	}
	s := c.RopeScaling
	switch s.Type {
	case "linear":
		for i := range inv {
			inv[i] /= s.Factor
		}
	case "llama3":
		old := float64(s.OriginalMaxPositionEmbeddings)
		lowWavelen := old / s.LowFreqFactor
		highWavelen := old / s.HighFreqFactor
		for i, f := range inv {
			wavelen := 2 * math.Pi / f
			switch {
			case wavelen < highWavelen:
				// high frequencies are kept
			case wavelen > lowWavelen:
				inv[i] = f / s.Factor
			default:
				smooth := (old/wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
				inv[i] = (1-smooth)*f/s.Factor + smooth*f
			}
		}
	}
	return inv
}

// KVDim is the width of one token's keys (or values) in one layer.
func (c *Config) KVDim() int { return c.NumKVHeads * c.HeadDim }

// QDim is the width of one token's queries.
func (c *Config) QDim() int { return c.NumHeads * c.HeadDim }

// NumParams counts the model's parameters (lm_head once when tied).
func (c *Config) NumParams() int64 {
	d, q, kv, f := int64(c.HiddenSize), int64(c.QDim()), int64(c.KVDim()), int64(c.IntermediateSize)
	perLayer := 2*d + d*q + 2*d*kv + q*d + 3*d*f
	if c.QKVBias {
		perLayer += q + 2*kv
	}
	if c.OBias {
		perLayer += d
	}
	n := int64(c.NumLayers)*perLayer + int64(c.VocabSize)*d + d
	if !c.TieWordEmbeddings {
		n += int64(c.VocabSize) * d
	}
	return n
}
