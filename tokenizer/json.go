package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
)

// fileJSON is the part of a Hugging Face tokenizer.json that vserve reads.
// Components are kept raw and decoded by their type tag.
type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Model         modelJSON        `json:"model"`
}

type addedTokenJSON struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Dropout                 *float64        `json:"dropout"`
}

// typeTag reads the "type" field of a component object. A JSON null or an
// absent component yields "".
// parseSequence decodes a "Sequence" component: each member of its list
// field (e.g. "decoders") with parse, dropping members that do nothing
// (parse returns nil). Errors name the member.
func parseSequence[T comparable](raw json.RawMessage, field string, parse func(json.RawMessage) (T, error)) ([]T, error) {
	var v map[string]json.RawMessage
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	var members []json.RawMessage
	if list, ok := v[field]; ok && !isNull(list) {
		if err := json.Unmarshal(list, &members); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	}
	var seq []T
	var none T
	for i, r := range members {
		m, err := parse(r)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		if m != none {
			seq = append(seq, m)
		}
	}
	return seq, nil
}

func typeTag(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var t struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return "", err
	}
	if t.Type == "" {
		return "", fmt.Errorf("component has no \"type\" field")
	}
	return t.Type, nil
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

// patternJSON is the {"String": "..."} or {"Regex": "..."} pattern object of
// Split pre-tokenizers and Replace normalizers/decoders.
type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// parseVocab decodes a BPE vocab object {"token": id, ...}.
func parseVocab(raw json.RawMessage) (map[string]int32, error) {
	if isNull(raw) {
		return nil, fmt.Errorf("model.vocab is missing")
	}
	if vocab, ok := fastVocab(raw); ok {
		return vocab, nil
	}
	var vocab map[string]int32
	if err := json.Unmarshal(raw, &vocab); err != nil {
		return nil, fmt.Errorf("model.vocab: %w (only BPE vocabularies, a token->id object, are supported)", err)
	}
	return vocab, nil
}

// parseMerges decodes merges given either as "a b" strings (older files) or
// as ["a", "b"] pairs (tokenizers >= 0.20).
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	if merges, ok, err := fastMerges(raw); ok {
		return merges, err
	}
	if pairsForm(raw) {
		return parseMergePairs(raw)
	}
	var asStrings []string
	if err := json.Unmarshal(raw, &asStrings); err == nil {
		out := make([][2]string, len(asStrings))
		for i, m := range asStrings {
			p, err := parseMergeString(i, m)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	}
	return parseMergePairs(raw)
}

// parseMergeString splits an "a b" merge.
func parseMergeString(i int, m string) ([2]string, error) {
	a, b, ok := strings.Cut(m, " ")
	if !ok || strings.Contains(b, " ") {
		return [2]string{}, fmt.Errorf("model.merges[%d] = %q: want two tokens separated by one space", i, m)
	}
	return [2]string{a, b}, nil
}

// pairsForm tells whether merges are written as [a, b] pairs: the first
// element of the list is itself a list.
func pairsForm(raw json.RawMessage) bool {
	s := strings.TrimLeft(string(raw[:min(len(raw), 64)]), " \t\r\n")
	if !strings.HasPrefix(s, "[") {
		return false
	}
	s = strings.TrimLeft(s[1:], " \t\r\n")
	return strings.HasPrefix(s, "[")
}

func parseMergePairs(raw json.RawMessage) ([][2]string, error) {
	var asPairs [][]string
	if err := json.Unmarshal(raw, &asPairs); err != nil {
		return nil, fmt.Errorf("model.merges: want a list of \"a b\" strings or of [a, b] pairs: %w", err)
	}
	out := make([][2]string, len(asPairs))
	for i, p := range asPairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("model.merges[%d]: want 2 tokens, got %d", i, len(p))
		}
		out[i] = [2]string{p[0], p[1]}
	}
	return out, nil
}
