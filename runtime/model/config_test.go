package model

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	base := `"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 8, "vocab_size": 100`
	tests := []struct {
		name  string
		json  string
		check func(t *testing.T, c *Config)
		err   string // substring of the error; "" = success
	}{
		{"llama defaults", `{"architectures": ["LlamaForCausalLM"], ` + base + `}`, func(t *testing.T, c *Config) {
			if c.NumKVHeads != 8 || c.HeadDim != 8 || c.RopeTheta != 10000 || c.TieWordEmbeddings || c.QKVBias {
				t.Errorf("defaults: %+v", c)
			}
		}, ""},
		{"gqa and head_dim", `{"architectures": ["LlamaForCausalLM"], ` + base + `, "num_key_value_heads": 2, "head_dim": 16, "rope_theta": 500000, "tie_word_embeddings": true}`,
			func(t *testing.T, c *Config) {
				if c.NumKVHeads != 2 || c.HeadDim != 16 || c.QDim() != 128 || c.KVDim() != 32 || c.RopeTheta != 500000 || !c.TieWordEmbeddings {
					t.Errorf("%+v", c)
				}
			}, ""},
		{"qwen2 biases", `{"architectures": ["Qwen2ForCausalLM"], ` + base + `, "eos_token_id": 7}`, func(t *testing.T, c *Config) {
			if !c.QKVBias || c.OBias || len(c.EOSTokenIDs) != 1 || c.EOSTokenIDs[0] != 7 {
				t.Errorf("%+v", c)
			}
		}, ""},
		{"llama attention_bias", `{"architectures": ["LlamaForCausalLM"], ` + base + `, "attention_bias": true}`, func(t *testing.T, c *Config) {
			if !c.QKVBias || !c.OBias {
				t.Errorf("%+v", c)
			}
		}, ""},
		{"eos list", `{"architectures": ["LlamaForCausalLM"], ` + base + `, "bos_token_id": 1, "eos_token_id": [2, 9]}`, func(t *testing.T, c *Config) {
			if len(c.EOSTokenIDs) != 2 || c.EOSTokenIDs[1] != 9 || c.BOSTokenIDs[0] != 1 {
				t.Errorf("%+v", c)
			}
		}, ""},
		{"mistral sliding window", `{"architectures": ["MistralForCausalLM"], ` + base + `, "sliding_window": 4096}`, func(t *testing.T, c *Config) {
			if c.SlidingWindow != 4096 {
				t.Errorf("%+v", c)
			}
		}, ""},
		{"llama3 scaling", `{"architectures": ["LlamaForCausalLM"], ` + base + `, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}}`,
			func(t *testing.T, c *Config) {
				if c.RopeScaling.Type != "llama3" || c.RopeScaling.Factor != 8 {
					t.Errorf("%+v", c.RopeScaling)
				}
			}, ""},
		{"bad json", `{"architectures": [`, nil, "cfg.json: bad JSON"},
		{"unsupported arch", `{"architectures": ["GPT2LMHeadModel"], ` + base + `}`, nil, "cfg.json: field architectures: unsupported architecture"},
		{"missing field", `{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}`, nil, "cfg.json: field intermediate_size: missing"},
		{"wrong type", `{"architectures": ["LlamaForCausalLM"], ` + strings.Replace(base, `"vocab_size": 100`, `"vocab_size": "100"`, 1) + `}`, nil, "cfg.json: bad JSON"},
		{"kv heads", `{"architectures": ["LlamaForCausalLM"], ` + base + `, "num_key_value_heads": 3}`, nil, "field num_key_value_heads"},
		{"rope type", `{"architectures": ["LlamaForCausalLM"], ` + base + `, "rope_scaling": {"rope_type": "yarn", "factor": 4}}`, nil, "field rope_scaling"},
		{"llama3 incomplete", `{"architectures": ["LlamaForCausalLM"], ` + base + `, "rope_scaling": {"rope_type": "llama3", "factor": 4}}`, nil, "field rope_scaling"},
		{"eos out of vocab", `{"architectures": ["LlamaForCausalLM"], ` + base + `, "eos_token_id": 100}`, nil, "eos_token_id"},
		{"eos bad type", `{"architectures": ["LlamaForCausalLM"], ` + base + `, "eos_token_id": "x"}`, nil, "field eos_token_id"},
		{"dtype", `{"architectures": ["LlamaForCausalLM"], ` + base + `, "torch_dtype": "int8"}`, nil, "field torch_dtype"},
		{"act", `{"architectures": ["LlamaForCausalLM"], ` + base + `, "hidden_act": "gelu"}`, nil, "field hidden_act"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig("cfg.json", []byte(tc.json))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
	_, err := ParseConfig("cfg.json", []byte(`{"architectures": ["X"], `+base+`}`))
	if !errors.Is(err, ErrUnsupportedArch) {
		t.Errorf("errors.Is(%v, ErrUnsupportedArch) = false", err)
	}
}

// TestInvFreqLlama3 checks the llama3 scaling against values computed by
// hand from its definition for Llama 3.1's parameters.
func TestInvFreqLlama3(t *testing.T) {
	c := &Config{HeadDim: 128, RopeTheta: 500000,
		RopeScaling: RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}}
	inv := c.InvFreq()
	if len(inv) != 64 {
		t.Fatal(len(inv))
	}
	// i=0: wavelen 2π < 2048 (high-frequency): unchanged.
	if inv[0] != 1 {
		t.Errorf("inv[0] = %g", inv[0])
	}
	// i=63: base 500000^(-126/128), wavelen ≈ 2π·405k > 8192: divided by 8.
	base := math.Pow(500000, -126.0/128)
	if math.Abs(inv[63]-base/8) > 1e-15 {
		t.Errorf("inv[63] = %g, want %g", inv[63], base/8)
	}
	// In the band 2048 <= wavelen <= 8192 the result is between f/8 and f.
	for i, f := range inv {
		raw := math.Pow(500000, -float64(2*i)/128)
		wl := 2 * math.Pi / raw
		if wl >= 2048 && wl <= 8192 {
			smooth := (8192/wl - 1) / 3
			want := (1-smooth)*raw/8 + smooth*raw
			if math.Abs(f-want) > 1e-12*raw {
				t.Errorf("inv[%d] = %g, want %g", i, f, want)
			}
		}
	}
	lin := &Config{HeadDim: 4, RopeTheta: 100, RopeScaling: RopeScaling{Type: "linear", Factor: 2}}
	if got := lin.InvFreq(); got[0] != 0.5 || math.Abs(got[1]-0.05) > 1e-15 {
		t.Errorf("linear: %v", got)
	}
}

func TestParseReleaseConfigs(t *testing.T) {
	tests := []struct {
		file string
		want Config
	}{
		{"llama-3.2-1b.json", Config{Architecture: ArchLlama, HiddenSize: 2048, IntermediateSize: 8192, NumLayers: 16,
			NumHeads: 32, NumKVHeads: 8, HeadDim: 64, VocabSize: 128256, TieWordEmbeddings: true, RopeTheta: 500000,
			RopeScaling: RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192},
			EOSTokenIDs: []int32{128001, 128008, 128009}}},
		{"qwen2.5-0.5b.json", Config{Architecture: ArchQwen2, HiddenSize: 896, IntermediateSize: 4864, NumLayers: 24,
			NumHeads: 14, NumKVHeads: 2, HeadDim: 64, VocabSize: 151936, TieWordEmbeddings: true, RopeTheta: 1e6,
			QKVBias: true, EOSTokenIDs: []int32{151645}}},
		{"mistral-7b-v0.1.json", Config{Architecture: ArchMistral, HiddenSize: 4096, IntermediateSize: 14336, NumLayers: 32,
			NumHeads: 32, NumKVHeads: 8, HeadDim: 128, VocabSize: 32000, RopeTheta: 10000, SlidingWindow: 4096,
			EOSTokenIDs: []int32{2}}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "configs", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			c, err := ParseConfig(tc.file, data)
			if err != nil {
				t.Fatal(err)
			}
			w := tc.want
			if c.Architecture != w.Architecture || c.HiddenSize != w.HiddenSize || c.IntermediateSize != w.IntermediateSize ||
				c.NumLayers != w.NumLayers || c.NumHeads != w.NumHeads || c.NumKVHeads != w.NumKVHeads || c.HeadDim != w.HeadDim ||
				c.VocabSize != w.VocabSize || c.TieWordEmbeddings != w.TieWordEmbeddings || c.RopeTheta != w.RopeTheta ||
				c.RopeScaling != w.RopeScaling || c.QKVBias != w.QKVBias || c.SlidingWindow != w.SlidingWindow ||
				!slices.Equal(c.EOSTokenIDs, w.EOSTokenIDs) {
				t.Errorf("got  %+v\nwant %+v", *c, w)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"llama-3.2-1b.json", "qwen2.5-0.5b.json", "mistral-7b-v0.1.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", "configs", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10, "eos_token_id": [1, 2]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("fuzz.json", data)
		if err != nil {
			return
		}
		if c.HiddenSize <= 0 || c.NumLayers <= 0 || c.VocabSize <= 0 || c.IntermediateSize <= 0 ||
			c.NumKVHeads <= 0 || c.NumHeads%c.NumKVHeads != 0 || c.HeadDim <= 0 || c.HeadDim%2 != 0 ||
			c.RMSNormEps <= 0 || c.RopeTheta <= 0 || c.MaxPositionEmbeddings <= 0 {
			t.Fatalf("accepted invalid config %+v", c)
		}
		for _, id := range append(c.BOSTokenIDs, c.EOSTokenIDs...) {
			if id < 0 || int(id) >= c.VocabSize {
				t.Fatalf("token id %d outside vocab %d", id, c.VocabSize)
			}
		}
		if inv := c.InvFreq(); len(inv) != c.HeadDim/2 {
			t.Fatalf("InvFreq len %d", len(inv))
		}
	})
}

// TestGenerationConfigDefaults: the sampling fields of generation_config.json
// that differ from Hugging Face's defaults become the model's request
// defaults; bad values are errors naming the file and field.
func TestGenerationConfigDefaults(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	i := func(v int) *int { return &v }
	tests := []struct {
		name, json string
		want       GenerationDefaults
		err        string
	}{
		{"none", `{"eos_token_id": 2, "do_sample": false, "max_length": 512}`, GenerationDefaults{}, ""},
		{"set", `{"temperature": 0.6, "top_p": 0.9, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "max_new_tokens": 128}`,
			GenerationDefaults{Temperature: f(0.6), TopP: f(0.9), MinP: f(0.05), RepetitionPenalty: f(1.1), TopK: i(20), MaxNewTokens: i(128)}, ""},
		{"Hugging Face's defaults are not defaults of ours", `{"temperature": 1.0, "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.0}`,
			GenerationDefaults{}, ""},
		{"greedy", `{"temperature": 0}`, GenerationDefaults{Temperature: f(0)}, ""},
		{"negative temperature", `{"temperature": -1}`, GenerationDefaults{}, "generation_config.json: field temperature"},
		{"top_p zero", `{"top_p": 0}`, GenerationDefaults{}, "field top_p"},
		{"top_k", `{"top_k": -2}`, GenerationDefaults{}, "field top_k"},
		{"max_new_tokens", `{"max_new_tokens": 0}`, GenerationDefaults{}, "field max_new_tokens"},
		{"bad type", `{"temperature": "hot"}`, GenerationDefaults{}, "bad JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{VocabSize: 10}
			err := c.mergeGenerationConfig("generation_config.json", []byte(tc.json))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tc.want, c.GenerationDefaults) {
				t.Errorf("defaults = %+v, want %+v", c.GenerationDefaults, tc.want)
			}
		})
	}
}
