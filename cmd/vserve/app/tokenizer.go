package app

import (
	"fmt"

	"github.com/vserve/vserve/server"
	"github.com/vserve/vserve/tokenizer"
)

// fallbackChatTemplate is used when the model has no chat template and
// --chat-template is not given (base models such as stories260K): each
// message on its own line as "role: content", then "assistant:".
const fallbackChatTemplate = `{{ bos_token }}{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}
{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}`

// tokenizerAdapter makes a *tokenizer.Tokenizer a server.Tokenizer.
type tokenizerAdapter struct {
	t        *tokenizer.Tokenizer
	template *tokenizer.ChatTemplate // nil: the tokenizer's own
	bos, eos string
	vocab    int
	// anchor is an ordinary token decoded before a token whose text is
	// wanted alone, so SentencePiece's leading space survives.
	anchor    []int32
	anchorLen int
}

// newTokenizerAdapter loads the template override (a file) or, when the
// model has none, the plain fallback. It reports which template is used.
func newTokenizerAdapter(t *tokenizer.Tokenizer, templateFile string, modelVocab int) (*tokenizerAdapter, string, error) {
	a := &tokenizerAdapter{t: t, vocab: max(t.VocabSize(), modelVocab)}
	if id, ok := t.BOSTokenID(); ok {
		a.bos = t.IDToToken(id)
	}
	if eos := t.EOSTokenIDs(); len(eos) > 0 {
		a.eos = t.IDToToken(eos[0])
	}
	if ids := t.Encode("a", false); len(ids) == 1 {
		a.anchor = []int32{ids[0], 0}
		a.anchorLen = len(t.Decode(ids, false))
	}
	switch {
	case templateFile != "":
		tmpl, err := tokenizer.LoadChatTemplateFile(templateFile)
		if err != nil {
			return nil, "", fmt.Errorf("--chat-template: %w", err)
		}
		a.template = tmpl
		return a, "file " + templateFile, nil
	case t.ChatTemplate() == nil:
		tmpl, err := tokenizer.LoadChatTemplate(fallbackChatTemplate)
		if err != nil {
			return nil, "", fmt.Errorf("fallback chat template: %w", err)
		}
		a.template = tmpl
		return a, "vserve's plain fallback (the model has none)", nil
	}
	return a, "the model's", nil
}

func (a *tokenizerAdapter) Encode(text string, addSpecial bool) ([]int32, error) {
	return a.t.Encode(text, addSpecial), nil
}

func (a *tokenizerAdapter) Decode(ids []int32, skipSpecial bool) (string, error) {
	return a.t.Decode(ids, skipSpecial), nil
}

// TokenText is the text one token adds after other text (with its leading
// space), as logprobs show it.
func (a *tokenizerAdapter) TokenText(id int32) string {
	if a.anchor != nil && !a.t.IsSpecial(id) {
		pair := []int32{a.anchor[0], id}
		if s := a.t.Decode(pair, false); len(s) >= a.anchorLen {
			return s[a.anchorLen:]
		}
	}
	return a.t.Decode([]int32{id}, false)
}

// TokenPiece is the token's vocabulary string (token_strs of /tokenize).
func (a *tokenizerAdapter) TokenPiece(id int32) string { return a.t.IDToToken(id) }

func (a *tokenizerAdapter) NewDecoder(prompt []int32, skipSpecial bool) server.Decoder {
	return a.t.NewIncrementalDecoder(prompt, skipSpecial)
}

func (a *tokenizerAdapter) RenderChat(msgs []server.ChatMessage, o server.ChatOptions) (string, error) {
	conv := make([]tokenizer.ChatMessage, len(msgs))
	for i, m := range msgs {
		conv[i] = tokenizer.ChatMessage{Role: m.Role, Content: m.Content.Text, Name: m.Name}
	}
	opts := tokenizer.RenderOptions{AddGenerationPrompt: o.AddGenerationPrompt, BOSToken: a.bos, EOSToken: a.eos}
	if o.ContinueFinalMessage {
		opts.AddGenerationPrompt = false
	}
	if a.template != nil {
		return a.template.Render(conv, opts)
	}
	return a.t.ApplyChatTemplate(conv, opts)
}

func (a *tokenizerAdapter) EOSTokenIDs() []int32 { return a.t.EOSTokenIDs() }

func (a *tokenizerAdapter) VocabSize() int { return a.vocab }
