package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
)

// tokenizerConfig is the part of tokenizer_config.json that vserve reads.
type tokenizerConfig struct {
	BOSToken                   tokenSpec                 `json:"bos_token"`
	EOSToken                   tokenSpec                 `json:"eos_token"`
	UnkToken                   tokenSpec                 `json:"unk_token"`
	PadToken                   tokenSpec                 `json:"pad_token"`
	AddBOSToken                *bool                     `json:"add_bos_token"`
	AddEOSToken                *bool                     `json:"add_eos_token"`
	CleanUpTokenizationSpaces  *bool                     `json:"clean_up_tokenization_spaces"`
	AdditionalSpecialTokens    []tokenSpec               `json:"additional_special_tokens"`
	AddedTokensDecoder         map[string]addedTokenJSON `json:"added_tokens_decoder"`
	ChatTemplate               chatTemplateSpec          `json:"chat_template"`
	TokenizerClass             string                    `json:"tokenizer_class"`
	SpacesBetweenSpecialTokens *bool                     `json:"spaces_between_special_tokens"`
}

// tokenSpec is a special token given as a string or as an AddedToken
// object {"content": ...}; null or absent leaves it empty.
type tokenSpec struct{ content string }

func (t *tokenSpec) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return nil
	}
	if err := json.Unmarshal(b, &t.content); err == nil {
		return nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("special token: want a string or {\"content\": ...}: %w", err)
	}
	t.content = obj.Content
	return nil
}

// chatTemplateSpec is a single template string or a list of named
// templates [{"name": "default", "template": "..."}, ...].
type chatTemplateSpec struct {
	named map[string]string
	order []string
}

func (c *chatTemplateSpec) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return nil
	}
	var single string
	if err := json.Unmarshal(b, &single); err == nil {
		c.named = map[string]string{"default": single}
		c.order = []string{"default"}
		return nil
	}
	var list []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("chat_template: want a string or a list of {name, template}: %w", err)
	}
	c.named = make(map[string]string, len(list))
	for _, e := range list {
		c.named[e.Name] = e.Template
		c.order = append(c.order, e.Name)
	}
	return nil
}

func readTokenizerConfig(path string) (*tokenizerConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg tokenizerConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cfg, nil
}

// sortedAddedTokensDecoder returns added_tokens_decoder entries by id.
func (c *tokenizerConfig) sortedAddedTokensDecoder() ([]addedTokenJSON, error) {
	out := make([]addedTokenJSON, 0, len(c.AddedTokensDecoder))
	for k, v := range c.AddedTokensDecoder {
		id, err := strconv.ParseInt(k, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("added_tokens_decoder key %q is not an id", k)
		}
		v.ID = int32(id)
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// generationConfig is the part of generation_config.json that names the
// stop tokens; eos_token_id may be one id or a list.
type generationConfig struct {
	BOSTokenID idList `json:"bos_token_id"`
	EOSTokenID idList `json:"eos_token_id"`
}

type idList []int32

func (l *idList) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return nil
	}
	var one int32
	if err := json.Unmarshal(b, &one); err == nil {
		*l = idList{one}
		return nil
	}
	var many []int32
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want an id or a list of ids: %w", err)
	}
	*l = many
	return nil
}

func readGenerationConfig(path string) (*generationConfig, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var g generationConfig
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &g, nil
}
