package tokenizer

import (
	"encoding/json"
	"fmt"

	"github.com/vserve/vserve/internal/sharedtest"
)

// Small synthetic tokenizer.json files in the two formats, built in code so
// that tests do not depend on ../shared.
var (
	tinySentencePieceJSON = buildTinySentencePiece()
	tinyByteLevelJSON     = buildTinyByteLevel()
)

func buildTinySentencePiece() string {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := 0; b < 256; b++ {
		vocab[fmt.Sprintf("<0x%02X>", b)] = 3 + b
	}
	next := 259
	for _, tok := range []string{"▁", "a", "b", "c", "▁a", "ab", "▁ab", "abc", "▁abc", "é"} {
		vocab[tok] = next
		next++
	}
	f := map[string]any{
		"version":      "1.0",
		"added_tokens": []any{special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"pre_tokenizer": nil,
		"post_processor": map[string]any{
			"type":           "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"pair":           []any{},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}},
		},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"model": map[string]any{
			"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
			"vocab":  vocab,
			"merges": []any{[]string{"▁", "a"}, []string{"a", "b"}, []string{"▁a", "b"}, []string{"ab", "c"}, []string{"▁ab", "c"}},
		},
	}
	return mustJSON(f)
}

func buildTinyByteLevel() string {
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[string(byteToRune[b])] = b
	}
	next := 256
	merges := []string{"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "Ġ Ġ"}
	for _, m := range merges {
		var a, b string
		fmt.Sscanf(m, "%s %s", &a, &b)
		if _, ok := vocab[a+b]; !ok {
			vocab[a+b] = next
			next++
		}
	}
	f := map[string]any{
		"added_tokens":   []any{special(300, "<|end|>"), map[string]any{"id": 301, "content": "<tool>", "special": false, "lstrip": true, "rstrip": true, "normalized": false, "single_word": false}},
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model":          map[string]any{"type": "BPE", "vocab": vocab, "merges": merges},
	}
	return mustJSON(f)
}

func special(id int, content string) map[string]any {
	return map[string]any{"id": id, "content": content, "special": true, "lstrip": false, "rstrip": false, "normalized": false, "single_word": false}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func sharedDirOrEmpty(rel string) string { return sharedtest.Dir(splitPath(rel)...) }

func splitPath(rel string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(rel); i++ {
		if i == len(rel) || rel[i] == '/' {
			out = append(out, rel[start:i])
			start = i + 1
		}
	}
	return out
}
