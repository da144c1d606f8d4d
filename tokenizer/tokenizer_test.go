package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Ids of the tiny SentencePiece tokenizer (tiny_test.go): specials 0-2,
// <0x00>.. at 3+b, then these.
const (
	spMeta = 259 + iota
	spA
	spB
	spC
	spMetaA
	spAB
	spMetaAB
	spABC
	spMetaABC
	spEAcute
)

func tinySP(t *testing.T) *Tokenizer {
	t.Helper()
	tok, err := parseTokenizerJSON([]byte(tinySentencePieceJSON))
	require.NoError(t, err)
	return tok
}

func tinyBL(t *testing.T) *Tokenizer {
	t.Helper()
	tok, err := parseTokenizerJSON([]byte(tinyByteLevelJSON))
	require.NoError(t, err)
	return tok
}

func TestSentencePieceEncode(t *testing.T) {
	tok := tinySP(t)
	tests := []struct {
		text    string
		special bool
		want    []int32
	}{
		{"abc a", true, []int32{1, spMetaABC, spMetaA}},
		{"abc a", false, []int32{spMetaABC, spMetaA}},
		{"", false, []int32{}},
		{"", true, []int32{1}},
		{" ab", false, []int32{spMeta, spMetaAB}},
		{"bab", false, []int32{spMeta, spB, spAB}},
		{"é", false, []int32{spMeta, spEAcute}},
		{"ü", false, []int32{spMeta, 3 + 0xC3, 3 + 0xBC}},                              // byte fallback
		{"<s>a</s>", false, []int32{1, spMetaA, 2}},                                    // specials in text; each section gets "▁"
		{"a<s>", false, []int32{spMetaA, 1}},                                           // nothing after the special token
		{"cab", false, []int32{spMeta, spC, spAB}},                                     // merges never reach across "c"
		{"a\u00a0b", false, []int32{spMetaA, 3 + 0xC2, 3 + 0xA0, spB}},                 // NBSP is not a space
		{"abcabc", false, []int32{spMetaABC, spABC}},                                   // inner piece uses the "abc" merge
		{"\x00", false, []int32{spMeta, 3}},                                            // control byte
		{"aa  b", false, []int32{spMetaA, spA, spMeta, spMeta, spB}},                   // "▁▁b": ▁ ▁ b, no "▁b" token
		{"ab c", false, []int32{spMetaAB, spMeta, spC}},                                // "▁c" is not a token
		{"a\nb", false, []int32{spMetaA, 3 + '\n', spB}},                               // newline by byte fallback
		{"abc\u0301", false, []int32{spMetaABC, 3 + 0xCC, 3 + 0x81}},                   // no NFC normalizer here
		{"\U0001F600", false, []int32{spMeta, 3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80}}, // 4-byte char
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, nonNil(tok.Encode(tc.text, tc.special)), "Encode(%q, %v)", tc.text, tc.special)
	}
}

func TestSentencePieceDecode(t *testing.T) {
	tok := tinySP(t)
	tests := []struct {
		ids  []int32
		skip bool
		want string
	}{
		{[]int32{1, spMetaABC, spMetaA}, false, "<s> abc a"},
		{[]int32{1, spMetaABC, spMetaA}, true, "abc a"},
		{[]int32{spMeta, spMetaAB}, false, " ab"},
		{[]int32{spMeta, 3 + 0xC3, 3 + 0xBC}, false, "ü"},
		{[]int32{3 + 0xC3}, false, "\uFFFD"},                          // a lone lead byte
		{[]int32{3 + 0xC3, 3 + 0xC3}, false, "\uFFFD\uFFFD"},          // one U+FFFD per byte token
		{[]int32{spA, 3 + 0xFF, spB}, false, "a\uFFFDb"},              // invalid byte between pieces
		{[]int32{-1, 99999, spA}, false, "a"},                         // unknown ids are ignored
		{[]int32{2, 0}, true, ""},                                     // only specials
		{[]int32{spMeta, spMeta, spA}, false, " a"},                   // Strip removes one space only
		{[]int32{spMetaA, 3 + 0xE4, 3 + 0xBD, 3 + 0xA0}, false, "a你"}, // 3-byte char
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tok.Decode(tc.ids, tc.skip), "Decode(%v, %v)", tc.ids, tc.skip)
	}
}

func TestSentencePieceUnkWithoutByteFallback(t *testing.T) {
	var f map[string]any
	require.NoError(t, json.Unmarshal([]byte(tinySentencePieceJSON), &f))
	model := f["model"].(map[string]any)
	model["byte_fallback"] = false
	tok, err := parseTokenizerJSON([]byte(mustJSON(f)))
	require.NoError(t, err)
	assert.Equal(t, []int32{spMeta, 0, spMetaA}, tok.Encode("üü a", false), "fuse_unk merges the two unknown chars")
	model["fuse_unk"] = false
	tok, err = parseTokenizerJSON([]byte(mustJSON(f)))
	require.NoError(t, err)
	assert.Equal(t, []int32{spMeta, 0, 0}, tok.Encode("üü", false))
}

func TestByteLevelEncodeDecode(t *testing.T) {
	tok := tinyBL(t)
	hello, _ := tok.TokenToID("hello")
	world, _ := tok.TokenToID("Ġworld")
	spsp, _ := tok.TokenToID("ĠĠ")
	tests := []struct {
		text string
		want []int32
	}{
		{"hello world", []int32{hello, world}},
		{"hello  world", []int32{hello, ' ', world}}, // the last space of a run joins the word
		{"hello   ", []int32{hello, spsp, ' '}},      // a trailing run stays whole: "ĠĠ" then "Ġ"
		{"a<|end|>b", []int32{'a', 300, 'b'}},
		{"a <tool> b", []int32{'a', 301, 'b'}}, // lstrip/rstrip swallow the spaces
		{"é", []int32{0xC3, 0xA9}},             // raw bytes
	}
	for _, tc := range tests {
		ids := tok.Encode(tc.text, true)
		assert.Equal(t, tc.want, ids, "Encode(%q)", tc.text)
	}
	assert.Equal(t, "hello world", tok.Decode([]int32{hello, world}, false))
	assert.Equal(t, "a<|end|>b", tok.Decode([]int32{'a', 300, 'b'}, false))
	assert.Equal(t, "ab", tok.Decode([]int32{'a', 300, 'b'}, true))
	assert.Equal(t, "a<tool>b", tok.Decode([]int32{'a', 301, 'b'}, true), "non-special added tokens stay")
	assert.Equal(t, "\uFFFD", tok.Decode([]int32{0xC3}, false))
	assert.True(t, tok.IsSpecial(300))
	assert.False(t, tok.IsSpecial(301))
	assert.False(t, tok.IsSpecial(hello))
}

func TestIgnoreMerges(t *testing.T) {
	var f map[string]any
	require.NoError(t, json.Unmarshal([]byte(tinyByteLevelJSON), &f))
	model := f["model"].(map[string]any)
	model["vocab"].(map[string]any)["xyz"] = 400 // reachable by no merge
	tok, err := parseTokenizerJSON([]byte(mustJSON(f)))
	require.NoError(t, err)
	assert.Equal(t, []int32{'x', 'y', 'z'}, tok.Encode("xyz", false))
	model["ignore_merges"] = true
	tok, err = parseTokenizerJSON([]byte(mustJSON(f)))
	require.NoError(t, err)
	assert.Equal(t, []int32{400}, tok.Encode("xyz", false))
}

func TestSplitBehaviors(t *testing.T) {
	tests := []struct {
		behavior string
		invert   bool
		want     []string
	}{
		{"Removed", false, []string{"the", "final", "countdown"}},
		{"Isolated", false, []string{"the", "-", "final", "-", "-", "countdown"}},
		{"MergedWithPrevious", false, []string{"the-", "final-", "-", "countdown"}},
		{"MergedWithNext", false, []string{"the", "-final", "-", "-countdown"}},
		{"Contiguous", false, []string{"the", "-", "final", "--", "countdown"}},
		{"Removed", true, []string{"-", "-", "-"}}, // each occurrence is its own span
	}
	for _, tc := range tests {
		b, err := parseSplitBehavior(tc.behavior)
		require.NoError(t, err)
		sp := &splitPreTokenizer{m: literalMatcher{lit: "-"}, behavior: b, invert: tc.invert}
		var got []string
		for _, p := range sp.preTokenize([]piece{{text: "the-final--countdown", atStart: true}}) {
			got = append(got, p.text)
		}
		assert.Equal(t, tc.want, got, "%s invert=%v", tc.behavior, tc.invert)
	}
	_, err := parseSplitBehavior("Sideways")
	assert.Error(t, err)
}

func TestMetaspacePreTokenizer(t *testing.T) {
	in := func() []piece { return []piece{{"hi there", true}, {"again", false}} }
	texts := func(ps []piece) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.text)
		}
		return out
	}
	split := true
	noSplit := false
	assert.Equal(t, []string{"▁hi", "▁there", "▁again"}, texts(newMetaspace("", "always", nil, &split).preTokenize(in())))
	assert.Equal(t, []string{"▁hi", "▁there", "again"}, texts(newMetaspace("", "first", nil, &split).preTokenize(in())))
	assert.Equal(t, []string{"hi", "▁there", "again"}, texts(newMetaspace("", "never", nil, &split).preTokenize(in())))
	assert.Equal(t, []string{"▁hi▁there", "again"}, texts(newMetaspace("", "first", nil, &noSplit).preTokenize(in())))
	// HF tokenizers splits before every "▁" (each occurrence is a match
	// merged with what follows unless that is a match too).
	assert.Equal(t, []string{"▁a", "▁", "▁b", "▁", "▁"}, texts(newMetaspace("", "always", nil, &split).preTokenize([]piece{{"a  b  ", true}})))
	off := false
	assert.Equal(t, "never", newMetaspace("", "", &off, nil).prepend, "legacy add_prefix_space=false")
}

func TestLossyUTF8(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "abc"},
		{"\xff\xfe", "\uFFFD\uFFFD"},
		{"\xF0\x9F\x98", "\uFFFD"}, // one truncated sequence
		{"a\xE4\xBDb", "a\uFFFDb"},
		{"\xED\xA0\x80", "\uFFFD\uFFFD\uFFFD"}, // surrogate: each byte
		{"\xC0\xAF", "\uFFFD\uFFFD"},           // overlong
		{"\xF4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"\xE2\x82", "\uFFFD"},
		{"é\x80", "é\uFFFD"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, lossyUTF8([]byte(tc.in)), "%q", tc.in)
	}
}

func TestCleanUpTokenization(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Hello , world !", "Hello, world!"},
		{"I do n't know . Is it ?", "I don't know. Is it?"},
		{"it 's we 're you 've I 'm", "it's we're you've I'm"},
		{"a ' b", "a'b"},
		{"no change", "no change"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, cleanUpTokenization(tc.in))
	}
}

func TestByteLevelAlphabet(t *testing.T) {
	assert.Equal(t, 'Ġ', byteToRune[' '])
	assert.Equal(t, 'Ċ', byteToRune['\n'])
	assert.Equal(t, 'A', byteToRune['A'])
	assert.Len(t, runeToByte, 256)
	raw, ok := byteLevelDecodeToken("ĠhelloĊ")
	require.True(t, ok)
	assert.Equal(t, " hello\n", string(raw))
	_, ok = byteLevelDecodeToken("你")
	assert.False(t, ok)
}

func TestMergesFormats(t *testing.T) {
	strs, err := parseMerges(json.RawMessage(`["a b", "ab c"]`))
	require.NoError(t, err)
	pairs, err := parseMerges(json.RawMessage(` [ ["a", "b"], ["ab", "c"] ]`))
	require.NoError(t, err)
	assert.Equal(t, [][2]string{{"a", "b"}, {"ab", "c"}}, strs)
	assert.Equal(t, strs, pairs)
	for _, bad := range []string{`["a b c"]`, `["ab"]`, `[["a"]]`, `[1]`, `{}`} {
		_, err := parseMerges(json.RawMessage(bad))
		assert.Error(t, err, bad)
	}
}

func TestLoadErrors(t *testing.T) {
	good := map[string]any{}
	require.NoError(t, json.Unmarshal([]byte(tinyByteLevelJSON), &good))
	mutate := func(f func(m map[string]any)) string {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(tinyByteLevelJSON), &m))
		f(m)
		return mustJSON(m)
	}
	tests := []struct {
		name, json, wantErr string
	}{
		{"not json", "{", "unexpected end"},
		{"unigram", `{"model":{"type":"Unigram","vocab":[["a",0]]}}`, `"Unigram" is not supported`},
		{"merge token missing", mutate(func(m map[string]any) {
			m["model"].(map[string]any)["merges"] = []string{"q zz"}
		}), "not in the vocab"},
		{"bad normalizer", mutate(func(m map[string]any) { m["normalizer"] = map[string]any{"type": "Precompiled"} }), `normalizer type "Precompiled"`},
		{"bad pre-tokenizer", mutate(func(m map[string]any) { m["pre_tokenizer"] = map[string]any{"type": "Nonsense"} }), `pre-tokenizer type "Nonsense"`},
		{"bad decoder", mutate(func(m map[string]any) { m["decoder"] = map[string]any{"type": "Nonsense"} }), `decoder type "Nonsense"`},
		{"bad regex", mutate(func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "(("}, "behavior": "Isolated"}
		}), "regex"},
		{"negative id", mutate(func(m map[string]any) { m["model"].(map[string]any)["vocab"].(map[string]any)["zz"] = -4 }), "negative id"},
		{"huge id", mutate(func(m map[string]any) {
			m["added_tokens"] = []any{special(1<<30, "<big>")}
		}), "out of range"},
		{"unk missing", mutate(func(m map[string]any) { m["model"].(map[string]any)["unk_token"] = "<nope>" }), "unk_token"},
		{"dropout", mutate(func(m map[string]any) { m["model"].(map[string]any)["dropout"] = 0.1 }), "dropout"},
		{"component without type", mutate(func(m map[string]any) { m["decoder"] = map[string]any{} }), "no \"type\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTokenizerJSON([]byte(tc.json))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
	_, err := LoadFile(filepath.Join(t.TempDir(), "missing.json"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// writeTinyDir writes the tiny SentencePiece tokenizer with the given
// tokenizer_config.json (and optional generation_config.json).
func writeTinyDir(t *testing.T, config, genConfig string) string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(tinySentencePieceJSON), 0o644))
	if config != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(config), 0o644))
	}
	if genConfig != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(genConfig), 0o644))
	}
	return dir
}

func TestConfigSettings(t *testing.T) {
	t.Run("no config", func(t *testing.T) {
		tok, err := LoadDir(writeTinyDir(t, "", ""))
		require.NoError(t, err)
		bos, ok := tok.BOSTokenID()
		assert.True(t, ok)
		assert.Equal(t, int32(1), bos, "BOS from the post-processor")
		assert.Empty(t, tok.EOSTokenIDs())
		assert.Nil(t, tok.ChatTemplate())
	})
	t.Run("add_bos_token false", func(t *testing.T) {
		tok, err := LoadDir(writeTinyDir(t, `{"add_bos_token": false, "bos_token": "<s>"}`, ""))
		require.NoError(t, err)
		assert.Equal(t, []int32{spMetaA}, tok.Encode("a", true))
	})
	t.Run("add_eos_token true", func(t *testing.T) {
		tok, err := LoadDir(writeTinyDir(t, `{"add_eos_token": true, "eos_token": {"content": "</s>", "special": true}}`, ""))
		require.NoError(t, err)
		assert.Equal(t, []int32{1, spMetaA, 2}, tok.Encode("a", true), "BOS kept from the template, EOS added")
	})
	t.Run("eos from both files", func(t *testing.T) {
		tok, err := LoadDir(writeTinyDir(t, `{"eos_token": "</s>"}`, `{"eos_token_id": [7, 2, 8]}`))
		require.NoError(t, err)
		assert.Equal(t, []int32{2, 7, 8}, tok.EOSTokenIDs())
	})
	t.Run("added_tokens_decoder adds tokens", func(t *testing.T) {
		tok, err := LoadDir(writeTinyDir(t, `{"added_tokens_decoder": {"269": {"content": "<new>", "special": true}}}`, ""))
		require.NoError(t, err)
		assert.Equal(t, []int32{spMetaA, 269, spMetaA}, tok.Encode("a<new>a", false))
		assert.True(t, tok.IsSpecial(269))
		assert.Equal(t, 270, tok.VocabSize())
	})
	t.Run("clean up", func(t *testing.T) {
		tok, err := LoadDir(writeTinyDir(t, `{"clean_up_tokenization_spaces": true}`, ""))
		require.NoError(t, err)
		assert.Equal(t, "a.", tok.Decode(tok.Encode("a .", false), false))
	})
	t.Run("bad bos", func(t *testing.T) {
		_, err := LoadDir(writeTinyDir(t, `{"bos_token": "<nope>"}`, ""))
		assert.ErrorContains(t, err, "bos_token")
	})
	t.Run("bad chat template", func(t *testing.T) {
		_, err := LoadDir(writeTinyDir(t, `{"chat_template": "{% for %}"}`, ""))
		assert.ErrorContains(t, err, "chat_template")
	})
	t.Run("special tokens in templates", func(t *testing.T) {
		tok, err := LoadDir(writeTinyDir(t, `{"unk_token": "<unk>", "pad_token": "</s>", "additional_special_tokens": ["<s>"], "chat_template": "{{ unk_token }}{{ pad_token }}{{ additional_special_tokens | join }}"}`, ""))
		require.NoError(t, err)
		out, err := tok.ApplyChatTemplate(nil, RenderOptions{})
		require.NoError(t, err)
		assert.Equal(t, "<unk></s><s>", out)
	})
	t.Run("chat_template.json file", func(t *testing.T) {
		dir := writeTinyDir(t, `{}`, "")
		require.NoError(t, os.WriteFile(filepath.Join(dir, "chat_template.json"), []byte(`{"chat_template": "[{{ messages[0].content }}]"}`), 0o644))
		tok, err := LoadDir(dir)
		require.NoError(t, err)
		out, err := tok.ApplyChatTemplate([]ChatMessage{{Role: "user", Content: "x"}}, RenderOptions{})
		require.NoError(t, err)
		assert.Equal(t, "[x]", out)
	})
	t.Run("chat_template.jinja file", func(t *testing.T) {
		dir := writeTinyDir(t, `{}`, "")
		require.NoError(t, os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte("{{ messages[0].content }}"), 0o644))
		tok, err := LoadDir(dir)
		require.NoError(t, err)
		out, err := tok.ApplyChatTemplate([]ChatMessage{{Role: "user", Content: "x"}}, RenderOptions{})
		require.NoError(t, err)
		assert.Equal(t, "x", out)
	})
}

func TestNamedChatTemplates(t *testing.T) {
	tok, err := LoadDir("testdata/tiny")
	require.NoError(t, err)
	require.NotNil(t, tok.ChatTemplate())
	tool := tok.NamedChatTemplate("tool_use")
	require.NotNil(t, tool)
	out, err := tool.Render([]ChatMessage{{Role: "user", Content: "hi"}}, RenderOptions{
		Extra: map[string]any{"tools": json.RawMessage(`[{"name": "f", "b": 1, "a": [1.5, true, null, "<&>"]}]`)},
	})
	require.NoError(t, err)
	assert.Equal(t, `[{"name": "f", "b": 1, "a": [1.5, true, null, "<&>"]}]`+"\nuser: hi\n", out)
}

func TestTokenLookups(t *testing.T) {
	tok := tinySP(t)
	id, ok := tok.TokenToID("▁abc")
	assert.True(t, ok)
	assert.Equal(t, int32(spMetaABC), id)
	_, ok = tok.TokenToID("nope")
	assert.False(t, ok)
	assert.Equal(t, "<0x41>", tok.IDToToken(3+0x41))
	assert.Equal(t, "", tok.IDToToken(-1))
	assert.Equal(t, "", tok.IDToToken(1<<20))
	assert.Equal(t, 269, tok.VocabSize())
	assert.True(t, tok.IsSpecial(2))
	assert.False(t, tok.IsSpecial(-3))
}

func TestSharedTokenizersLoad(t *testing.T) {
	for _, dir := range []string{
		"tokenizers/llama2", "tokenizers/llama3", "tokenizers/qwen2.5", "tokenizers/mistral", "tokenizers/gpt2",
		"models/stories260K/hf", "models/llama2-tokenizer/hf",
	} {
		t.Run(dir, func(t *testing.T) {
			tok := loadShared(t, dir)
			assert.Greater(t, tok.VocabSize(), 256)
			assert.NotEmpty(t, tok.EOSTokenIDs())
			// Every id decodes without panicking and special tokens vanish
			// when skipped.
			for id := int32(0); id < int32(tok.VocabSize()); id += 97 {
				if tok.IsSpecial(id) {
					assert.Equal(t, "", tok.Decode([]int32{id}, true))
				}
			}
		})
	}
}

func TestSharedSpecialIDs(t *testing.T) {
	tests := []struct {
		dir  string
		bos  int32
		eos  []int32
		chat bool
	}{
		{"tokenizers/llama2", 1, []int32{2}, true},
		{"tokenizers/llama3", 128000, []int32{128009}, true},
		{"tokenizers/qwen2.5", -1, []int32{151645}, true},
		{"tokenizers/mistral", 1, []int32{2}, false},
		{"tokenizers/gpt2", 50256, []int32{50256}, false},
		{"models/stories260K/hf", 1, []int32{2}, false},
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			tok := loadShared(t, tc.dir)
			bos, ok := tok.BOSTokenID()
			assert.Equal(t, tc.bos >= 0, ok)
			if ok {
				assert.Equal(t, tc.bos, bos)
			}
			assert.Equal(t, tc.eos, tok.EOSTokenIDs())
			assert.Equal(t, tc.chat, tok.ChatTemplate() != nil)
		})
	}
}

func TestQwenNFC(t *testing.T) {
	tok := loadShared(t, "tokenizers/qwen2.5")
	assert.Equal(t, tok.Encode("café", false), tok.Encode("cafe\u0301", false))
	llama3 := loadShared(t, "tokenizers/llama3")
	assert.NotEqual(t, llama3.Encode("café", false), llama3.Encode("cafe\u0301", false), "Llama 3 has no normalizer")
}

func TestConcurrentEncode(t *testing.T) {
	tok := tinyBL(t)
	want := tok.Encode(strings.Repeat("hello world ", 50), false)
	done := make(chan []int32)
	for i := 0; i < 8; i++ {
		go func() { done <- tok.Encode(strings.Repeat("hello world ", 50), false) }()
	}
	for i := 0; i < 8; i++ {
		assert.Equal(t, want, <-done)
	}
}

// TestLongInputs encodes long single pre-tokens (one huge word, a long
// whitespace run, a long digit run) and checks the round trip; a quadratic
// path would show up as a test timeout.
func TestLongInputs(t *testing.T) {
	inputs := []string{
		strings.Repeat("a", 200_000),
		strings.Repeat(" ", 100_000) + "x",
		strings.Repeat("7", 100_000),
		strings.Repeat("ab ", 50_000),
		strings.Repeat("😀", 20_000),
	}
	toks := map[string]*Tokenizer{"tiny-bl": tinyBL(t), "tiny-sp": tinySP(t)}
	for _, dir := range []string{"tokenizers/llama3", "tokenizers/llama2"} {
		if sharedDirOrEmpty(dir) != "" {
			toks[dir] = loadShared(t, dir)
		}
	}
	for name, tok := range toks {
		for _, in := range inputs {
			ids := tok.Encode(in, false)
			assert.Equal(t, in, tok.decodeRaw(ids, false), "%s: round trip of %d bytes", name, len(in))
		}
	}
}

func TestNormalizers(t *testing.T) {
	tests := []struct {
		json, in, want string
	}{
		{`{"type":"NFC"}`, "e\u0301", "é"},
		{`{"type":"NFD"}`, "é", "e\u0301"},
		{`{"type":"NFKC"}`, "ﬁ①", "fi1"},
		{`{"type":"NFKD"}`, "ﬁé", "fie\u0301"},
		{`{"type":"Lowercase"}`, "ÀB c", "àb c"},
		{`{"type":"Strip","strip_left":true,"strip_right":false}`, "  a  ", "a  "},
		{`{"type":"Sequence","normalizers":[{"type":"NFD"},{"type":"StripAccents"}]}`, "café", "cafe"},
		{`{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "}`, "a \t\n b", "a b"},
		{`{"type":"Prepend","prepend":"▁"}`, "", ""},
		{`{"type":"Sequence","normalizers":[]}`, "x", "x"},
	}
	for _, tc := range tests {
		n, err := parseNormalizer(json.RawMessage(tc.json))
		require.NoError(t, err, tc.json)
		assert.Equal(t, tc.want, n.normalize(tc.in), tc.json)
	}
}

func TestDecoders(t *testing.T) {
	tests := []struct {
		json   string
		tokens []string
		want   string
	}{
		{`{"type":"ByteLevel"}`, []string{"Ġhello", "ĊĠ", "<|im_end|>", "你"}, " hello\n <|im_end|>你"},
		{`{"type":"ByteLevel"}`, []string{"Ã", "©"}, "é"}, // a character split over two tokens
		{`{"type":"Replace","pattern":{"Regex":"_+"},"content":"-"}`, []string{"a__b", "_"}, "a-b-"},
		{`{"type":"Strip","content":"x","start":2,"stop":1}`, []string{"xxxaxx"}, "xax"},
		{`{"type":"Metaspace","replacement":"▁","prepend_scheme":"never"}`, []string{"▁a", "▁b"}, " a b"},
		{`{"type":"Metaspace","replacement":"▁","add_prefix_space":true}`, []string{"▁a", "▁b"}, "a b"},
		{`{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Fuse"}]}`, []string{"<0xE2>", "<0x82>", "<0xAC>", "x", "<0xZZ>"}, "€x<0xZZ>"},
	}
	for _, tc := range tests {
		d, err := parseDecoder(json.RawMessage(tc.json))
		require.NoError(t, err, tc.json)
		assert.Equal(t, tc.want, strings.Join(d.decodeChain(tc.tokens), ""), tc.json)
	}
}

func TestSimplePreTokenizers(t *testing.T) {
	tests := []struct {
		json, in string
		want     []string
	}{
		{`{"type":"Digits","individual_digits":true}`, "Call 123 please", []string{"Call ", "1", "2", "3", " please"}},
		{`{"type":"Digits","individual_digits":false}`, "Call 123 please", []string{"Call ", "123", " please"}},
		{`{"type":"Punctuation"}`, "Hey friend!     How are you?!?", []string{"Hey friend", "!", "     How are you", "?", "!", "?"}},
		{`{"type":"Punctuation","behavior":"MergedWithPrevious"}`, "a+b", []string{"a+", "b"}},
		{`{"type":"WhitespaceSplit"}`, "Hey  friend!\n x", []string{"Hey", "friend!", "x"}},
		{`{"type":"CharDelimiterSplit","delimiter":"|"}`, "a|b||c", []string{"a", "b", "c"}},
	}
	for _, tc := range tests {
		var info preTokenizerInfo
		p, err := parsePreTokenizer(json.RawMessage(tc.json), &info)
		require.NoError(t, err, tc.json)
		var got []string
		for _, pc := range p.preTokenize([]piece{{text: tc.in, atStart: true}}) {
			got = append(got, pc.text)
		}
		assert.Equal(t, tc.want, got, tc.json)
	}
	var info preTokenizerInfo
	_, err := parsePreTokenizer(json.RawMessage(`{"type":"CharDelimiterSplit","delimiter":"ab"}`), &info)
	assert.Error(t, err)
}
