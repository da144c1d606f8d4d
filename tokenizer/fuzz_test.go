package tokenizer

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

var fuzzSeeds = []string{
	"", " ", "Hello world", "I'm you're THEY'LL", "  leading\n\n  x\r\n\ty", "1234567 3.14",
	"emoji 😀🎉 CJK 你好 café", "a\u00a0b\u3000c", "'s 'S 'x", "   ", "\n", "x  \n  y  ", "!!! ??\n\n",
	"ſ 'ſ", "a\u0301", "\u2028\u2029", "٣٤٥ ²³ Ⅻ",
}

// FuzzScannerMatchesRegex checks the hand-written pre-tokenizer scanners
// against regexp2 running the original patterns.
func FuzzScannerMatchesRegex(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	type pair struct {
		name string
		fast matcher
		re   matcher
	}
	var pairs []pair
	for name, p := range map[string]string{"gpt2": gpt2Pattern, "llama3": llama3Pattern, "qwen2": qwen2Pattern} {
		re, err := compileOniguruma(p)
		require.NoError(f, err)
		fast := knownScanner(p)
		require.NotNil(f, fast)
		pairs = append(pairs, pair{name, fast, regexMatcher{re: re}})
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		for _, p := range pairs {
			want := nonEmpty(p.re.findAll(s))
			got := nonEmpty(p.fast.findAll(s))
			require.Equal(t, want, got, "%s on %q", p.name, s)
		}
	})
}

func nonEmpty(m [][2]int) [][2]int {
	out := [][2]int{}
	for _, r := range m {
		if r[0] < r[1] {
			out = append(out, r)
		}
	}
	return out
}

// FuzzParseTokenizerJSON feeds arbitrary bytes to the tokenizer.json
// parser: it must return an error or a tokenizer that encodes and decodes
// without panicking.
func FuzzParseTokenizerJSON(f *testing.F) {
	f.Add([]byte(tinySentencePieceJSON))
	f.Add([]byte(tinyByteLevelJSON))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[]}}`))
	f.Add([]byte(`{"model":{"type":"Unigram","vocab":[["a",0.0]]}}`))
	f.Add([]byte(`{"model":{"vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"added_tokens":[{"id":5,"content":"<x>","special":true}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parseTokenizerJSON(data)
		if err != nil {
			return
		}
		ids := tok.Encode("ab a<x> ▁b", true)
		_ = tok.Decode(ids, false)
		_ = tok.Decode([]int32{-1, 0, 1, 1 << 30}, true)
	})
}

// FuzzRoundTripByteLevel checks decode(encode(s)) == s for the byte-level
// BPE families on valid UTF-8 (GPT-2 without its clean-up rule).
func FuzzRoundTripByteLevel(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	tok, err := parseTokenizerJSON([]byte(tinyByteLevelJSON))
	require.NoError(f, err)
	toks := []*Tokenizer{tok}
	for _, dir := range []string{"tokenizers/gpt2", "tokenizers/llama3", "tokenizers/qwen2.5"} {
		if shared := sharedDirOrEmpty(dir); shared != "" {
			toks = append(toks, loadShared(f, dir))
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		for _, tok := range toks {
			got := tok.decodeRaw(tok.Encode(s, false), false)
			want := s
			if tok.normalizer != nil { // Qwen's NFC
				want = tok.normalizer.normalize(s)
			}
			if strings.Contains(s, "<|") { // special tokens may be written in the text
				continue
			}
			require.Equal(t, want, got)
		}
	})
}

// FuzzRoundTripSentencePiece checks decode(encode(s)) == s for SentencePiece
// BPE with byte fallback; the decoder strips the one space it prepends.
func FuzzRoundTripSentencePiece(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	tok, err := parseTokenizerJSON([]byte(tinySentencePieceJSON))
	require.NoError(f, err)
	toks := []*Tokenizer{tok}
	for _, dir := range []string{"tokenizers/llama2", "tokenizers/mistral", "models/stories260K/hf"} {
		if sharedDirOrEmpty(dir) != "" {
			toks = append(toks, loadShared(f, dir))
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || strings.ContainsAny(s, "<▁") {
			return // written special tokens, or "▁" which decodes to a space
		}
		for _, tok := range toks {
			require.Equal(t, s, tok.decodeRaw(tok.Encode(s, false), false))
		}
	})
}

// FuzzChatTemplate compiles and renders arbitrary template sources: both
// must return (an error or a result) without panicking.
func FuzzChatTemplate(f *testing.F) {
	for _, s := range []string{
		"{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content | trim }}\n{% endfor %}",
		"{{ x | tojson(indent=2) }}{{ 'a|tojson' }}{% generation %}g{% endgeneration %}",
		"{% set ns = namespace(a=1) %}{{ ns.a }}{{ messages[::-1][0].content }}",
		"{{ raise_exception('x') }}", "{% if %}", "{{", "{% for x in y %}", "{{ 1/0 }}", "{{ 'a'[5:2] }}",
	} {
		f.Add(s)
	}
	msgs := []ChatMessage{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "yo"}}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := LoadChatTemplate(src)
		if err != nil {
			return
		}
		_, _ = c.Render(msgs, RenderOptions{AddGenerationPrompt: true, Extra: map[string]any{"x": []any{1, "a"}}})
	})
}

// FuzzFastJSON checks the vocab and merges fast paths against
// encoding/json: when a fast path accepts the input it must agree.
func FuzzFastJSON(f *testing.F) {
	for _, s := range []string{`{"a": 1, "b\u00e9": 2, "\"": 3}`, `{}`, ` { "x" : -4 } `, `{"a":1,}`,
		`["a b", "c d"]`, `[["a", "b"], ["\n", " "]]`, `[]`, `["a"]`, `[["a"]]`, `{"a": 1.5}`, `{"a": 1e3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		if got, ok := fastVocab(data); ok {
			var want map[string]int32
			require.NoError(t, json.Unmarshal(data, &want), "fast path accepted %q", data)
			require.Equal(t, want, got)
		}
		if got, ok, err := fastMerges(data); ok && err == nil {
			var strs []string
			var pairs [][]string
			if json.Unmarshal(data, &strs) == nil {
				require.Len(t, got, len(strs))
				for i, m := range strs {
					p, err := parseMergeString(i, m)
					require.NoError(t, err)
					require.Equal(t, p, got[i])
				}
			} else {
				require.NoError(t, json.Unmarshal(data, &pairs), "fast path accepted %q", data)
				require.Len(t, got, len(pairs))
				for i, p := range pairs {
					require.Equal(t, [2]string{p[0], p[1]}, got[i])
				}
			}
		}
	})
}

// FuzzTokenizerConfig feeds arbitrary tokenizer_config.json contents to a
// tokenizer (what LoadDir does with the file): applying it must fail with
// an error or leave a tokenizer that encodes, decodes, streams and renders
// its chat template without panicking.
func FuzzTokenizerConfig(f *testing.F) {
	f.Add(`{"bos_token":"<s>","eos_token":"</s>","add_bos_token":true,"add_eos_token":true}`)
	f.Add(`{"added_tokens_decoder":{"1":{"content":"<s>","special":true},"300":{"content":"<x>","special":true}},"bos_token":{"content":"<s>"}}`)
	f.Add(`{"chat_template":"{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}{% endfor %}","clean_up_tokenization_spaces":true}`)
	f.Add(`{"chat_template":[{"name":"default","template":"{{ messages[0].content }}"},{"name":"tool_use","template":"x"}],"additional_special_tokens":["<x>"]}`)
	f.Add(`{"eos_token":"<none>","add_eos_token":true,"unk_token":null,"pad_token":{"content":"</s>"}}`)
	f.Fuzz(func(t *testing.T, config string) {
		tok, err := parseTokenizerJSON([]byte(tinySentencePieceJSON))
		if err != nil {
			t.Fatal(err)
		}
		var cfg tokenizerConfig
		if json.Unmarshal([]byte(config), &cfg) != nil {
			return
		}
		if tok.applyConfig(&cfg) != nil {
			return
		}
		ids := tok.Encode("ab <s> abc</s> é", true)
		for _, id := range ids {
			if int(id) < 0 || int(id) >= tok.VocabSize() {
				t.Fatalf("Encode gave id %d outside the vocabulary of %d", id, tok.VocabSize())
			}
		}
		_ = tok.Decode(ids, true)
		d := tok.NewIncrementalDecoder(ids[:len(ids)/2], true)
		for _, id := range ids[len(ids)/2:] {
			_ = d.Add(id)
		}
		_, _ = tok.ApplyChatTemplate([]ChatMessage{{Role: "user", Content: "a"}}, RenderOptions{AddGenerationPrompt: true})
	})
}
