package model_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/tokenizer"
)

// TestGeneratedTokenizerLoads checks that the tokenizer package loads the
// generated tokenizer.json and that it encodes text into merged pieces and
// decodes it back, including characters only byte fallback can spell.
func TestGeneratedTokenizerLoads(t *testing.T) {
	for _, vocab := range []int{300, 512, 32000} {
		dir := t.TempDir()
		spec := model.SpecTiny
		spec.Vocab, spec.Layers, spec.Hidden, spec.Intermediate, spec.Heads, spec.KVHeads = vocab, 1, 16, 16, 2, 1
		if err := model.Generate(dir, spec, 1); err != nil {
			t.Fatal(err)
		}
		tok, err := tokenizer.LoadDir(dir)
		if err != nil {
			t.Fatalf("vocab %d: %v", vocab, err)
		}
		if tok.VocabSize() != vocab {
			t.Errorf("vocab %d: tokenizer has %d tokens", vocab, tok.VocabSize())
		}
		for _, text := range []string{"Once upon a time, there was a little dog named Max.", "naïve café ✓ 42"} {
			ids := tok.Encode(text, true)
			if ids[0] != 1 {
				t.Errorf("vocab %d: %q does not start with BOS: %v", vocab, text, ids)
			}
			if got := tok.Decode(ids, true); got != text {
				t.Errorf("vocab %d: round trip %q -> %v -> %q", vocab, text, ids, got)
			}
		}
		if ids := tok.Encode("Once upon a time, there was a little dog", false); vocab >= 512 && len(ids) > 20 {
			t.Errorf("vocab %d: %d tokens for 40 characters: merges not applied", vocab, len(ids))
		}
	}
}

// TestGeneratedTokenizerMatchesHF compares the tokenizer package's
// encoding with the Hugging Face tokenizers library (0.23.2, run once by
// hand over the generated tokenizer.json files; its output is in testdata).
func TestGeneratedTokenizerMatchesHF(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "generated_tokenizer_hf.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Vocab map[string][]struct {
			Text string  `json:"text"`
			IDs  []int32 `json:"ids"`
		} `json:"vocab"`
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	for vocab, cases := range golden.Vocab {
		n, _ := strconv.Atoi(vocab)
		dir := t.TempDir()
		spec := model.SpecTiny
		spec.Vocab, spec.Layers, spec.Hidden, spec.Intermediate, spec.Heads, spec.KVHeads = n, 1, 16, 16, 2, 1
		if err := model.Generate(dir, spec, 1); err != nil {
			t.Fatal(err)
		}
		tok, err := tokenizer.LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			if got := tok.Encode(c.Text, true); !slices.Equal(got, c.IDs) {
				t.Errorf("vocab %d: %q\n got %v\nwant %v (HF)", n, c.Text, got, c.IDs)
			}
		}
	}
}
