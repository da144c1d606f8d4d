package bench

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/internal/sharedtest"
	"github.com/vserve/vserve/tokenizer"
)

// Random prompts must be token-exact through a real 32,000-token
// SentencePiece vocabulary, where decode/re-encode is not an identity.
func TestRandomPromptsRealTokenizer(t *testing.T) {
	dir := sharedtest.Path(t, "models", "llama2-tokenizer", "hf")
	tok, err := tokenizer.LoadDir(dir)
	require.NoError(t, err)
	ps, err := RandomPrompts(tok, 20, LenRange{Mean: 128, Ratio: 0.25}, LenRange{Mean: 16}, 3)
	require.NoError(t, err)
	for _, p := range ps {
		assert.Len(t, tok.Encode(p.Text, false), p.PromptLen)
		assert.Equal(t, tok.Encode(p.Text, false), p.TokenIDs)
	}
}
