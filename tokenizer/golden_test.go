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

// loadShared loads (once per test binary) a tokenizer directory given
// relative to ../shared.
func loadShared(t testing.TB, rel string) *Tokenizer {
	t.Helper()
	dir := sharedtest.Path(t, strings.Split(rel, "/")...)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if tok, ok := sharedToks[dir]; ok {
		return tok
	}
	tok, err := LoadDir(dir)
	require.NoError(t, err)
	sharedToks[dir] = tok
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
