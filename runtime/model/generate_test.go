package model

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestGenerateDeterministicAndLoadable(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	for _, d := range []struct {
		dir  string
		seed int64
	}{{a, 42}, {b, 42}, {c, 43}} {
		if err := Generate(d.dir, SpecTiny, d.seed); err != nil {
			t.Fatal(err)
		}
	}
	read := func(dir, name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
		if !bytes.Equal(read(a, f), read(b, f)) {
			t.Errorf("%s differs for the same seed", f)
		}
	}
	if bytes.Equal(read(a, "model.safetensors"), read(c, "model.safetensors")) {
		t.Error("weights equal for different seeds")
	}
	var progress []int64
	m, err := Load(a, newCPU(t), LoadOptions{Progress: func(done, total int64) { progress = append(progress, done, total) }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Config.VocabSize != 512 || m.Config.NumLayers != SpecTiny.Layers {
		t.Fatalf("config %+v", m.Config)
	}
	st, _ := os.Stat(filepath.Join(a, "model.safetensors"))
	if n := len(progress); n == 0 || progress[n-2] != progress[n-1] || progress[n-1] < st.Size()-4096 {
		t.Errorf("progress %v (file %d bytes)", progress[max(0, len(progress)-2):], st.Size())
	}
	// The CPU backend maps every f32 matrix without a copy; only the
	// vectors are uploaded (they are converted to the compute dtype,
	// which for f32 is no conversion but still a copy).
	if m.MappedBytes == 0 || m.MappedBytes < 10*m.UploadedBytes {
		t.Errorf("mapped %d bytes, uploaded %d", m.MappedBytes, m.UploadedBytes)
	}
	m2, err := Load(a, newCPU(t), LoadOptions{NoMap: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.MappedBytes != 0 {
		t.Errorf("NoMap mapped %d bytes", m2.MappedBytes)
	}
}

func TestGenerateSpecs(t *testing.T) {
	for _, name := range []string{"tiny", "15M", "42M", "110M", "1B"} {
		s, ok := SpecByName(name)
		if !ok {
			t.Fatalf("spec %s missing", name)
		}
		s = s.withDefaults()
		if err := s.validate(); err != nil {
			t.Error(err)
		}
		cfg, err := ParseConfig(name, mustJSON(t, s.configJSON()))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %.1fM parameters", name, float64(cfg.NumParams())/1e6)
	}
	// NumParams agrees with the tensors Generate writes (tied and untied).
	for _, tied := range []bool{true, false} {
		s := SpecTiny
		s.Tied = tied
		dir := t.TempDir()
		if err := Generate(dir, s, 1); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(dir)
		if err != nil {
			t.Fatal(err)
		}
		w, err := OpenWeights(dir)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, f := range w.files {
			for _, ti := range f.Tensors {
				n += ti.NumElements()
			}
		}
		w.Close()
		if n != cfg.NumParams() {
			t.Errorf("tied=%v: files hold %d parameters, NumParams says %d", tied, n, cfg.NumParams())
		}
	}
	if err := Generate(t.TempDir(), Spec{Name: "bad", Hidden: 10, Intermediate: 10, Layers: 1, Heads: 3, Vocab: 300}, 1); err == nil {
		t.Error("head dim 3 accepted")
	}
	if err := Generate(t.TempDir(), Spec{Name: "bad", Hidden: 8, Intermediate: 10, Layers: 1, Heads: 2, Vocab: 100}, 1); err == nil {
		t.Error("vocab 100 accepted")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestTrainBPE(t *testing.T) {
	for _, size := range []int{259, 300, 512, 4000, 32000} {
		pieces, merges, err := TrainBPE(corpus, size)
		if err != nil {
			t.Fatal(err)
		}
		if len(pieces) != size {
			t.Fatalf("vocab %d: got %d pieces", size, len(pieces))
		}
		seen := map[string]bool{}
		for _, p := range pieces {
			if seen[p] {
				t.Fatalf("vocab %d: duplicate piece %q", size, p)
			}
			seen[p] = true
		}
		if pieces[0] != "<unk>" || pieces[1] != "<s>" || pieces[2] != "</s>" || pieces[3] != "<0x00>" || pieces[258] != "<0xFF>" {
			t.Fatalf("vocab %d: bad special/byte pieces", size)
		}
		for _, m := range merges {
			if !seen[m[0]] || !seen[m[1]] || !seen[m[0]+m[1]] || strings.Contains(m[0]+m[1], " ") {
				t.Fatalf("vocab %d: merge %q references pieces outside the vocabulary", size, m)
			}
		}
		if size >= 512 && !slices.Contains(pieces, "▁the") {
			t.Errorf("vocab %d: the most common word ▁the was not learned", size)
		}
	}
	if _, _, err := TrainBPE(corpus, 100); err == nil {
		t.Error("vocab 100 accepted")
	}
}
