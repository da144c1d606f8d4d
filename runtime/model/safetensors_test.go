package model

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/kernel/cpu"
)

// stFile builds safetensors bytes from a header map and a data section.
func stFile(t testing.TB, header any, data []byte) []byte {
	hj, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hj)))
	return append(append(out, hj...), data...)
}

func entry(dtype string, shape []int, lo, hi int) map[string]any {
	return map[string]any{"dtype": dtype, "shape": shape, "data_offsets": []int{lo, hi}}
}

func TestParseHeader(t *testing.T) {
	good := map[string]any{"__metadata__": map[string]string{"format": "pt"},
		"a": entry("F32", []int{2, 3}, 0, 24), "b": entry("BF16", []int{4}, 24, 32)}
	tests := []struct {
		name string
		file []byte
		err  string
	}{
		{"good", stFile(t, good, make([]byte, 32)), ""},
		{"empty", nil, "truncated"},
		{"short header", binary.LittleEndian.AppendUint64(nil, 100), "truncated"},
		{"huge header", binary.LittleEndian.AppendUint64(nil, 1<<40), "exceeds"},
		{"bad json", append(binary.LittleEndian.AppendUint64(nil, 3), "{x}"...), "bad safetensors header JSON"},
		{"past eof", stFile(t, map[string]any{"a": entry("F32", []int{2, 3}, 0, 24)}, make([]byte, 20)), `tensor "a": truncated file`},
		{"size mismatch", stFile(t, map[string]any{"a": entry("F32", []int{2, 3}, 0, 20)}, make([]byte, 24)), `tensor "a": 20 bytes`},
		{"reversed", stFile(t, map[string]any{"a": entry("F32", []int{0}, 8, 0)}, make([]byte, 24)), "reversed"},
		{"unknown dtype", stFile(t, map[string]any{"a": entry("Q4", []int{1}, 0, 1)}, make([]byte, 1)), `tensor "a": unknown dtype`},
		{"bad metadata", stFile(t, map[string]any{"__metadata__": map[string]int{"x": 1}}, nil), "__metadata__"},
		{"bad offsets", stFile(t, map[string]any{"a": map[string]any{"dtype": "F32", "shape": []int{1}, "data_offsets": []int{0}}}, make([]byte, 4)), "data_offsets"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseHeader("x.safetensors", tc.file, int64(len(tc.file)))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if a := h.Tensors["a"]; a.NumElements() != 6 || a.End != 24 || h.Metadata["format"] != "pt" {
					t.Errorf("%+v", h)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "x.safetensors") {
				t.Fatalf("error %v, want one naming x.safetensors and containing %q", err, tc.err)
			}
		})
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(stFile(f, map[string]any{"a": entry("F32", []int{2}, 0, 8)}, make([]byte, 8)))
	f.Add(stFile(f, map[string]any{"__metadata__": map[string]string{}, "b": entry("F16", []int{1, 1}, 0, 2)}, make([]byte, 2)))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, '{'})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader("fuzz", data, int64(len(data)))
		if err != nil {
			return
		}
		var total int64
		for _, ti := range h.Tensors {
			total += ti.End - ti.Begin
		}
		if h.DataStart+total != int64(len(data)) {
			t.Fatalf("tensors hold %d of the %d data bytes", total, int64(len(data))-h.DataStart)
		}
		for name, ti := range h.Tensors {
			if ti.Begin < 0 || ti.End < ti.Begin || h.DataStart+ti.End > int64(len(data)) {
				t.Fatalf("tensor %q range [%d,%d) escapes %d bytes", name, ti.Begin, ti.End, len(data))
			}
			if ti.End-ti.Begin != ti.NumElements()*dtypeSizes[ti.DType] {
				t.Fatalf("tensor %q size mismatch", name)
			}
		}
	})
}

func newCPU(t testing.TB) kernel.Backend {
	be, err := cpu.New(kernel.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

// rewriteTensor edits one tensor's header entry of dir/model.safetensors.
func rewriteHeader(t *testing.T, dir string, edit func(h map[string]json.RawMessage)) {
	path := filepath.Join(dir, "model.safetensors")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(data)
	var h map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &h); err != nil {
		t.Fatal(err)
	}
	edit(h)
	if err := os.WriteFile(path, stFile(t, h, data[8+n:]), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	spec := SpecTiny
	spec.Layers = 1
	const q = "model.layers.0.self_attn.q_proj.weight"
	tests := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   []string
	}{
		{"missing tensor", func(t *testing.T, dir string) {
			rewriteHeader(t, dir, func(h map[string]json.RawMessage) { h[q+".renamed"] = h[q]; delete(h, q) })
		}, []string{"model.safetensors", q, "missing tensor"}},
		{"overlapping tensors", func(t *testing.T, dir string) {
			rewriteHeader(t, dir, func(h map[string]json.RawMessage) {
				var e map[string]any
				json.Unmarshal(h["model.norm.weight"], &e)
				e["data_offsets"] = []int{0, 256} // the first bytes of another tensor
				h["model.norm.weight"], _ = json.Marshal(e)
			})
		}, []string{"model.safetensors", "model.norm.weight", "overlap"}},
		{"bytes after the last tensor", func(t *testing.T, dir string) {
			f, _ := os.OpenFile(filepath.Join(dir, "model.safetensors"), os.O_APPEND|os.O_WRONLY, 0)
			f.Write(make([]byte, 4))
			f.Close()
		}, []string{"model.safetensors", "4 bytes of data follow the last tensor's data"}},
		{"more layers in config.json than in the weights", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(strings.Replace(string(data), `"num_hidden_layers": 1`, `"num_hidden_layers": 16000000`, 1)), 0o644)
		}, []string{"model.safetensors", "model.layers.15999999.input_layernorm.weight", "num_hidden_layers is 16000000"}},
		{"wrong shape", func(t *testing.T, dir string) {
			rewriteHeader(t, dir, func(h map[string]json.RawMessage) {
				var e map[string]any
				json.Unmarshal(h[q], &e)
				e["shape"] = []int{32, 128}
				h[q], _ = json.Marshal(e)
			})
		}, []string{"model.safetensors", q, "shape [32 128], want [64 64]"}},
		{"unsupported dtype", func(t *testing.T, dir string) {
			rewriteHeader(t, dir, func(h map[string]json.RawMessage) {
				var e map[string]any
				json.Unmarshal(h[q], &e)
				e["dtype"], e["shape"] = "I32", []int{64, 64}
				h[q], _ = json.Marshal(e)
			})
		}, []string{"model.safetensors", q, "unsupported dtype I32"}},
		{"truncated", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-10)
		}, []string{"model.safetensors", "truncated"}},
		{"bad config", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"architectures": ["BertModel"]}`), 0o644)
		}, []string{"config.json", "architectures"}},
		{"no weights", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model.safetensors"))
		}, []string{"model.safetensors.index.json"}},
		{"untied without lm_head", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(strings.Replace(string(data), `"tie_word_embeddings": true`, `"tie_word_embeddings": false`, 1)), 0o644)
		}, []string{"lm_head.weight", "missing"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Generate(dir, spec, 1); err != nil {
				t.Fatal(err)
			}
			tc.break_(t, dir)
			m, err := Load(dir, newCPU(t), LoadOptions{})
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadShardedIndexErrors(t *testing.T) {
	spec := SpecTiny
	spec.Shards = 2
	dir := t.TempDir()
	if err := Generate(dir, spec, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors.index.json")); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir, newCPU(t), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	idx := filepath.Join(dir, "model.safetensors.index.json")
	os.WriteFile(idx, []byte(`{"weight_map": {"model.norm.weight": "model-00009-of-00009.safetensors"}}`), 0o644)
	_, err = Load(dir, newCPU(t), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "model-00009-of-00009.safetensors") {
		t.Fatalf("error %v does not name the missing shard", err)
	}
	os.WriteFile(idx, []byte(`{"weight_map": `), 0o644)
	if _, err = Load(dir, newCPU(t), LoadOptions{}); err == nil || !strings.Contains(err.Error(), "index.json: bad JSON") {
		t.Fatalf("error %v", err)
	}
	if !errors.Is(func() error { _, err := OpenWeights(t.TempDir()); return err }(), ErrNoWeights) {
		t.Error("empty dir: want ErrNoWeights")
	}
}
