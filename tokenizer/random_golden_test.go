package tokenizer

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

type randomGolden struct {
	Tokenizers map[string]struct {
		Texts   []string  `json:"texts"`
		IDs     [][]int32 `json:"ids"`
		Decodes []struct {
			IDs             []int32 `json:"ids"`
			Text            string  `json:"text"`
			TextSkipSpecial string  `json:"text_skip_special"`
		} `json:"decodes"`
	} `json:"tokenizers"`
}

// TestGoldenRandom compares Encode on random mixed-script strings and
// Decode on random id sequences with @huggingface/tokenizers.
func TestGoldenRandom(t *testing.T) {
	var g randomGolden
	readGolden(t, "random_golden.json", &g)
	for dir, c := range g.Tokenizers {
		t.Run(dir, func(t *testing.T) {
			tok := loadShared(t, dir)
			for i, text := range c.Texts {
				assert.Equal(t, nonNil(c.IDs[i]), nonNil(tok.Encode(text, false)), "Encode(%q)", text)
			}
			compared := 0
			for _, d := range c.Decodes {
				if !hasInvalidByteRun(tok, d.IDs) {
					assert.Equal(t, d.Text, tok.Decode(d.IDs, false), "Decode(%v, false)", d.IDs)
					compared++
				}
				if !hasInvalidByteRun(tok, skipSpecial(tok, d.IDs)) {
					assert.Equal(t, d.TextSkipSpecial, tok.Decode(d.IDs, true), "Decode(%v, true)", d.IDs)
				}
			}
			assert.GreaterOrEqual(t, compared, 5, "too few decode cases compared")
			t.Logf("%d of %d random decodes compared", compared, len(c.Decodes))
		})
	}
}

// hasInvalidByteRun tells whether ids hold a run of <0xNN> byte-fallback
// tokens that is not valid UTF-8. There HF tokenizers (Rust, which vLLM
// uses) yields one U+FFFD per byte token, while the JavaScript reference
// replaces per invalid sequence, so such cases are not compared; the Rust
// rule is tested in TestSentencePieceDecode.
func hasInvalidByteRun(tok *Tokenizer, ids []int32) bool {
	if !tok.model.byteFallback {
		return false
	}
	var run []byte
	for _, id := range append(append([]int32(nil), ids...), -1) {
		if b, ok := parseByteToken(tok.IDToToken(id)); ok {
			run = append(run, b)
			continue
		}
		if !utf8.Valid(run) {
			return true
		}
		run = run[:0]
	}
	return false
}

func skipSpecial(tok *Tokenizer, ids []int32) []int32 {
	var out []int32
	for _, id := range ids {
		if !tok.IsSpecial(id) {
			out = append(out, id)
		}
	}
	return out
}
