package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/internal/sharedtest"
)

// Golden files are produced by testdata/gen.mjs with the Hugging Face
// JavaScript implementations (see testdata/README.md).

type encodeCase struct {
	Text               string  `json:"text"`
	IDs                []int32 `json:"ids"`
	IDsNoSpecial       []int32 `json:"ids_no_special"`
	Decoded            *string `json:"decoded"`
	DecodedSkipSpecial *string `json:"decoded_skip_special"`
}

type encodeGolden struct {
	Tokenizers map[string][]encodeCase `json:"tokenizers"`
}

func readGolden(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, v))
}

var (
	sharedMu   sync.Mutex
	sharedToks = map[string]*Tokenizer{}
)

// variantEdits mirror the "variants" of testdata/gen.mjs: real
// vocabularies with the layout of newer SentencePiece-style files (no
// normalizer, a Metaspace pre-tokenizer). Metaspace with split=true is not
// compared: there the JavaScript reference keeps a run of "▁" together,
// while HF tokenizers (Rust) splits before each one (MergedWithNext per
// occurrence), which this package follows (TestMetaspacePreTokenizer).
var variantEdits = map[string]struct {
	base string
	edit func(f map[string]any)
}{
	"variants/mistral-metaspace-first": {"tokenizers/mistral", func(f map[string]any) {
		f["normalizer"] = nil
		f["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}
	}},
	"variants/llama2-metaspace-always": {"tokenizers/llama2", func(f map[string]any) {
		f["normalizer"] = nil
		f["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": false}
		f["decoder"] = map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": false},
			map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"},
		}}
	}},
}

// variantDir writes an edited copy of a shared tokenizer folder.
func variantDir(t testing.TB, rel string) string {
	v, ok := variantEdits[rel]
	require.True(t, ok, "unknown variant %s", rel)
	base := sharedtest.Path(t, strings.Split(v.base, "/")...)
	data, err := os.ReadFile(filepath.Join(base, "tokenizer.json"))
	require.NoError(t, err)
	var f map[string]any
	require.NoError(t, json.Unmarshal(data, &f))
	v.edit(f)
	dir, err := os.MkdirTemp("", "tokvariant")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(mustJSON(f)), 0o644))
	cfg, err := os.ReadFile(filepath.Join(base, "tokenizer_config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644))
	return dir
}

// loadShared loads (once per test binary) a tokenizer directory given
// relative to ../shared, or a variant of one.
func loadShared(t testing.TB, rel string) *Tokenizer {
	t.Helper()
	var dir string
	if strings.HasPrefix(rel, "variants/") {
		dir = variantDir(t, rel)
		defer os.RemoveAll(dir)
	} else {
		dir = sharedtest.Path(t, strings.Split(rel, "/")...)
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if tok, ok := sharedToks[rel]; ok {
		return tok
	}
	tok, err := LoadDir(dir)
	require.NoError(t, err)
	sharedToks[rel] = tok
	return tok
}

func TestGoldenEncodeDecode(t *testing.T) {
	var g encodeGolden
	readGolden(t, "encode_golden.json", &g)
	require.NotEmpty(t, g.Tokenizers)
	for dir, cases := range g.Tokenizers {
		t.Run(dir, func(t *testing.T) {
			tok := loadShared(t, dir)
			for _, c := range cases {
				assert.Equal(t, c.IDs, nonNil(tok.Encode(c.Text, true)), "Encode(%q, true)", c.Text)
				assert.Equal(t, c.IDsNoSpecial, nonNil(tok.Encode(c.Text, false)), "Encode(%q, false)", c.Text)
				if c.Decoded != nil {
					assert.Equal(t, *c.Decoded, tok.Decode(c.IDs, false), "Decode(%v, false) of %q", c.IDs, c.Text)
					assert.Equal(t, *c.DecodedSkipSpecial, tok.Decode(c.IDs, true), "Decode(%v, true) of %q", c.IDs, c.Text)
				}
			}
		})
	}
}

func nonNil(ids []int32) []int32 {
	if ids == nil {
		return []int32{}
	}
	return ids
}
