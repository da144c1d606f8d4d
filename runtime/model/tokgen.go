package model

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// corpus is a small original English text the generated tokenizers are
// trained on, so that real prompts tokenize into merged pieces.
//
//go:embed corpus.txt
var corpus string

// minVocab is <unk>, <s>, </s> and the 256 byte-fallback tokens.
const minVocab = 3 + 256

const spaceMark = "▁"

// TrainBPE learns a SentencePiece-style BPE vocabulary of vocabSize pieces
// from text: the three special tokens, 256 <0xNN> byte tokens, the text's
// characters (most frequent first), then merged pieces in the order a
// deterministic BPE loop learns them (most frequent adjacent pair, ties
// broken by the smaller pair). Merges never cross a word boundary (▁). When
// the text has no pairs left, deterministic extra pieces (an existing piece
// followed by a letter) pad the vocabulary. It returns the pieces in id
// order and the merges in priority order.
func TrainBPE(text string, vocabSize int) (pieces []string, merges [][2]string, err error) {
	if vocabSize < minVocab {
		return nil, nil, fmt.Errorf("model: tokenizer vocab %d below %d: %w", vocabSize, minVocab, errVocab)
	}
	pieces = []string{"<unk>", "<s>", "</s>"}
	for b := 0; b < 256; b++ {
		pieces = append(pieces, fmt.Sprintf("<0x%02X>", b))
	}
	have := map[string]bool{}
	for _, p := range pieces {
		have[p] = true
	}
	add := func(p string) {
		pieces = append(pieces, p)
		have[p] = true
	}
	words, counts := corpusWords(text)
	for _, ch := range alphabet(words, counts) {
		if len(pieces) < vocabSize && !have[ch] {
			add(ch)
		}
	}
	for len(pieces) < vocabSize {
		a, b, ok := bestPair(words, counts, have)
		if !ok {
			break
		}
		merges = append(merges, [2]string{a, b})
		if !have[a+b] {
			add(a + b)
		}
		for _, w := range words {
			mergeWord(w, a, b)
		}
	}
	pieces, merges = padVocab(pieces, merges, have, vocabSize)
	return pieces, merges, nil
}

// corpusWords normalizes text the way the tokenizer does (▁ prefix, spaces
// to ▁), splits it before each ▁ and returns the distinct words as symbol
// lists with their counts.
func corpusWords(text string) ([]*[]string, []int) {
	norm := spaceMark + strings.ReplaceAll(strings.ReplaceAll(text, "\n", " "), " ", spaceMark)
	freq := map[string]int{}
	start := 0
	for i := len(spaceMark); i <= len(norm); i++ {
		if i == len(norm) || strings.HasPrefix(norm[i:], spaceMark) {
			freq[norm[start:i]]++
			start = i
		}
	}
	keys := sortedKeys(freq)
	words := make([]*[]string, len(keys))
	counts := make([]int, len(keys))
	for i, k := range keys {
		syms := []string{}
		for _, r := range k {
			syms = append(syms, string(r))
		}
		words[i], counts[i] = &syms, freq[k]
	}
	return words, counts
}

func alphabet(words []*[]string, counts []int) []string {
	freq := map[string]int{}
	for i, w := range words {
		for _, s := range *w {
			freq[s] += counts[i]
		}
	}
	chars := sortedKeys(freq)
	sort.SliceStable(chars, func(i, j int) bool { return freq[chars[i]] > freq[chars[j]] })
	return chars
}

func bestPair(words []*[]string, counts []int, have map[string]bool) (string, string, bool) {
	type pair struct{ a, b string }
	freq := map[pair]int{}
	for i, w := range words {
		syms := *w
		for j := 0; j+1 < len(syms); j++ {
			if have[syms[j]] && have[syms[j+1]] {
				freq[pair{syms[j], syms[j+1]}] += counts[i]
			}
		}
	}
	var best pair
	bestN := 0
	for p, n := range freq {
		if n > bestN || (n == bestN && (p.a+" "+p.b) < (best.a+" "+best.b)) {
			best, bestN = p, n
		}
	}
	return best.a, best.b, bestN > 0
}

func mergeWord(w *[]string, a, b string) {
	syms := *w
	out := syms[:0]
	for j := 0; j < len(syms); j++ {
		if j+1 < len(syms) && syms[j] == a && syms[j+1] == b {
			out = append(out, a+b)
			j++
			continue
		}
		out = append(out, syms[j])
	}
	*w = out
}

// padVocab adds pieces "p+c" for existing non-special pieces p and letters c
// (a merge each) until the vocabulary has vocabSize pieces.
func padVocab(pieces []string, merges [][2]string, have map[string]bool, vocabSize int) ([]string, [][2]string) {
	const letters = "etaoinshrdlcumwfgypbvkjxqz"
	for i := minVocab; len(pieces) < vocabSize && i < len(pieces); i++ {
		p := pieces[i]
		for _, c := range letters {
			if len(pieces) >= vocabSize {
				break
			}
			if !have[string(c)] || have[p+string(c)] {
				continue
			}
			merges = append(merges, [2]string{p, string(c)})
			pieces = append(pieces, p+string(c))
			have[p+string(c)] = true
		}
	}
	// A vocabulary without letters (tiny sizes) cannot grow: fill with
	// distinct unreachable pieces so ids stay dense.
	for n := 0; len(pieces) < vocabSize; n++ {
		p := fmt.Sprintf("<extra_%d>", n)
		if !have[p] {
			pieces = append(pieces, p)
			have[p] = true
		}
	}
	return pieces, merges
}

// writeTokenizer writes tokenizer.json and tokenizer_config.json for a
// Llama-2-style SentencePiece BPE tokenizer of vocabSize pieces.
func writeTokenizer(dir string, vocabSize, maxLen int) error {
	pieces, merges, err := TrainBPE(corpus, vocabSize)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString(tokenizerHead)
	buf.WriteString(`    "vocab": {`)
	for i, p := range pieces {
		if i > 0 {
			buf.WriteString(", ")
		}
		k, _ := json.Marshal(p)
		fmt.Fprintf(&buf, "%s: %d", k, i)
	}
	buf.WriteString("},\n    \"merges\": [")
	for i, m := range merges {
		if i > 0 {
			buf.WriteString(", ")
		}
		k, _ := json.Marshal(m[0] + " " + m[1])
		buf.Write(k)
	}
	buf.WriteString("]\n  }\n}\n")
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	special := func(s string) map[string]any {
		return map[string]any{"content": s, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true}
	}
	cfg := map[string]any{
		"add_bos_token":                true,
		"add_eos_token":                false,
		"added_tokens_decoder":         map[string]any{"0": special("<unk>"), "1": special("<s>"), "2": special("</s>")},
		"bos_token":                    "<s>",
		"eos_token":                    "</s>",
		"unk_token":                    "<unk>",
		"pad_token":                    nil,
		"clean_up_tokenization_spaces": false,
		"legacy":                       false,
		"model_max_length":             maxLen,
		"tokenizer_class":              "LlamaTokenizerFast",
		// A plain role-prefixed template so that chat endpoints work with
		// generated models; it is not any real model's template.
		"chat_template": "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
	}
	return writeJSON(filepath.Join(dir, "tokenizer_config.json"), cfg)
}

const tokenizerHead = `{
  "version": "1.0",
  "truncation": null,
  "padding": null,
  "added_tokens": [
    {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
  "pre_tokenizer": null,
  "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {
    "type": "BPE",
    "dropout": null,
    "unk_token": "<unk>",
    "continuing_subword_prefix": null,
    "end_of_word_suffix": null,
    "fuse_unk": true,
    "byte_fallback": true,
    "ignore_merges": false,
`
