package runner

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// refModel is an independent, straightforward float64 Llama-family forward
// pass used as the oracle: it reads config.json and the safetensors files
// itself and recomputes the whole sequence every call.
type refModel struct {
	hidden, inter, layers, heads, kvHeads, headDim, vocab int
	eps                                                   float64
	invFreq                                               []float64
	t                                                     map[string][]float64
	tied                                                  bool
}

func loadRef(t *testing.T, dir string) *refModel {
	t.Helper()
	var c struct {
		Arch        []string `json:"architectures"`
		Hidden      int      `json:"hidden_size"`
		Inter       int      `json:"intermediate_size"`
		Layers      int      `json:"num_hidden_layers"`
		Heads       int      `json:"num_attention_heads"`
		KVHeads     int      `json:"num_key_value_heads"`
		HeadDim     int      `json:"head_dim"`
		Vocab       int      `json:"vocab_size"`
		Eps         float64  `json:"rms_norm_eps"`
		Theta       float64  `json:"rope_theta"`
		Tied        bool     `json:"tie_word_embeddings"`
		RopeScaling *struct {
			Type string  `json:"rope_type"`
			F    float64 `json:"factor"`
			Low  float64 `json:"low_freq_factor"`
			High float64 `json:"high_freq_factor"`
			Orig float64 `json:"original_max_position_embeddings"`
		} `json:"rope_scaling"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.HeadDim == 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	m := &refModel{hidden: c.Hidden, inter: c.Inter, layers: c.Layers, heads: c.Heads, kvHeads: c.KVHeads,
		headDim: c.HeadDim, vocab: c.Vocab, eps: c.Eps, tied: c.Tied, t: map[string][]float64{}}
	for i := 0; i < c.HeadDim/2; i++ {
		f := math.Pow(c.Theta, -float64(2*i)/float64(c.HeadDim))
		if rs := c.RopeScaling; rs != nil && rs.Type == "llama3" {
			wl := 2 * math.Pi / f
			lowWl, highWl := rs.Orig/rs.Low, rs.Orig/rs.High
			if wl > lowWl {
				f /= rs.F
			} else if wl >= highWl {
				s := (rs.Orig/wl - rs.Low) / (rs.High - rs.Low)
				f = (1-s)*f/rs.F + s*f
			}
		}
		m.invFreq = append(m.invFreq, f)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	for _, f := range files {
		readSafetensorsRef(t, f, m.t)
	}
	return m
}

func readSafetensorsRef(t *testing.T, path string, into map[string][]float64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(data)
	var h map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &h); err != nil {
		t.Fatal(err)
	}
	body := data[8+n:]
	for name, raw := range h {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			DType string  `json:"dtype"`
			Off   []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		b := body[e.Off[0]:e.Off[1]]
		var v []float64
		switch e.DType {
		case "F32":
			for i := 0; i < len(b); i += 4 {
				v = append(v, float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))))
			}
		case "BF16":
			for i := 0; i < len(b); i += 2 {
				v = append(v, float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[i:]))<<16)))
			}
		case "F16":
			for i := 0; i < len(b); i += 2 {
				v = append(v, halfToFloat(binary.LittleEndian.Uint16(b[i:])))
			}
		default:
			t.Fatalf("%s: dtype %s", name, e.DType)
		}
		into[name] = v
	}
}

func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	switch e {
	case 0:
		return sign * m * math.Pow(2, -24)
	case 0x1f:
		if m == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	return sign * (1 + m/1024) * math.Pow(2, float64(e-15))
}

func (m *refModel) w(name string) []float64 {
	v, ok := m.t[name]
	if !ok {
		panic("reference: missing " + name)
	}
	return v
}

// linear returns W·x (+b) for W [out×in].
func linear(W, x []float64, b []float64) []float64 {
	in := len(x)
	out := make([]float64, len(W)/in)
	for o := range out {
		s := 0.0
		for i, xi := range x {
			s += W[o*in+i] * xi
		}
		if b != nil {
			s += b[o]
		}
		out[o] = s
	}
	return out
}

func rmsnorm(x, w []float64, eps float64) []float64 {
	ss := 0.0
	for _, v := range x {
		ss += v * v
	}
	r := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i := range x {
		out[i] = x[i] * r * w[i]
	}
	return out
}

func (m *refModel) rope(v []float64, pos int, nHeads int) {
	hd, half := m.headDim, m.headDim/2
	for h := 0; h < nHeads; h++ {
		x := v[h*hd : (h+1)*hd]
		for i := 0; i < half; i++ {
			a := float64(pos) * m.invFreq[i]
			c, s := math.Cos(a), math.Sin(a)
			x0, x1 := x[i], x[i+half]
			x[i], x[i+half] = x0*c-x1*s, x1*c+x0*s
		}
	}
}

// bias returns the tensor or nil when the model has none.
func (m *refModel) bias(name string) []float64 { return m.t[name] }

// logits runs the whole sequence and returns the logits of every position.
func (m *refModel) logits(tokens []int32) [][]float64 {
	D, hd := m.hidden, m.headDim
	T := len(tokens)
	x := make([][]float64, T)
	emb := m.w("model.embed_tokens.weight")
	for t, id := range tokens {
		x[t] = append([]float64(nil), emb[int(id)*D:(int(id)+1)*D]...)
	}
	for l := 0; l < m.layers; l++ {
		p := "model.layers." + itoa(l) + "."
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range x {
			h := rmsnorm(x[t], m.w(p+"input_layernorm.weight"), m.eps)
			qs[t] = linear(m.w(p+"self_attn.q_proj.weight"), h, m.bias(p+"self_attn.q_proj.bias"))
			ks[t] = linear(m.w(p+"self_attn.k_proj.weight"), h, m.bias(p+"self_attn.k_proj.bias"))
			vs[t] = linear(m.w(p+"self_attn.v_proj.weight"), h, m.bias(p+"self_attn.v_proj.bias"))
			m.rope(qs[t], t, m.heads)
			m.rope(ks[t], t, m.kvHeads)
		}
		group := m.heads / m.kvHeads
		for t := range x {
			att := make([]float64, m.heads*hd)
			for h := 0; h < m.heads; h++ {
				kvh := h / group
				scores := make([]float64, t+1)
				mx := math.Inf(-1)
				for s := 0; s <= t; s++ {
					d := 0.0
					for i := 0; i < hd; i++ {
						d += qs[t][h*hd+i] * ks[s][kvh*hd+i]
					}
					scores[s] = d / math.Sqrt(float64(hd))
					mx = math.Max(mx, scores[s])
				}
				sum := 0.0
				for s := range scores {
					scores[s] = math.Exp(scores[s] - mx)
					sum += scores[s]
				}
				for s := range scores {
					for i := 0; i < hd; i++ {
						att[h*hd+i] += scores[s] / sum * vs[s][kvh*hd+i]
					}
				}
			}
			o := linear(m.w(p+"self_attn.o_proj.weight"), att, m.bias(p+"self_attn.o_proj.bias"))
			for i := range o {
				x[t][i] += o[i]
			}
			h := rmsnorm(x[t], m.w(p+"post_attention_layernorm.weight"), m.eps)
			g := linear(m.w(p+"mlp.gate_proj.weight"), h, nil)
			u := linear(m.w(p+"mlp.up_proj.weight"), h, nil)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
			d := linear(m.w(p+"mlp.down_proj.weight"), g, nil)
			for i := range d {
				x[t][i] += d[i]
			}
		}
	}
	head := "lm_head.weight"
	if m.tied {
		head = "model.embed_tokens.weight"
	}
	out := make([][]float64, T)
	for t := range x {
		out[t] = linear(m.w(head), rmsnorm(x[t], m.w("model.norm.weight"), m.eps), nil)
	}
	return out
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
