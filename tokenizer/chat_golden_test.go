package tokenizer

import (
	"encoding/json"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/internal/sharedtest"
)

type chatGolden struct {
	Cases []struct {
		Template            string            `json:"template"`
		Conversation        string            `json:"conversation"`
		AddGenerationPrompt bool              `json:"add_generation_prompt"`
		Tools               bool              `json:"tools"`
		Extra               map[string]string `json:"extra"`
		Output              *string           `json:"output"`
		Error               string            `json:"error"`
	} `json:"cases"`
	Conversations map[string][]struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"conversations"`
	Tools json.RawMessage `json:"tools"`
}

// goldenTemplate loads the template a golden case names: a folder's
// tokenizer_config.json or a chat_template.*.jinja file.
func goldenTemplate(t *testing.T, name string) (*ChatTemplate, *Tokenizer) {
	dir, file := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	abs := sharedtest.Path(t, strings.Split(dir, "/")...)
	tok := loadShared(t, dir)
	if file == "tokenizer_config.json" {
		require.NotNil(t, tok.ChatTemplate(), name)
		return tok.ChatTemplate(), tok
	}
	c, err := LoadChatTemplateFile(path.Join(abs, file))
	require.NoError(t, err)
	return c, tok
}

func TestGoldenChatTemplates(t *testing.T) {
	var g chatGolden
	readGolden(t, "chat_golden.json", &g)
	require.NotEmpty(t, g.Cases)
	for _, c := range g.Cases {
		name := strings.Join([]string{c.Template, c.Conversation}, "/")
		if c.AddGenerationPrompt {
			name += "/gen"
		}
		if c.Tools {
			name += "/tools"
		}
		t.Run(name, func(t *testing.T) {
			tmpl, tok := goldenTemplate(t, c.Template)
			var msgs []ChatMessage
			for _, m := range g.Conversations[c.Conversation] {
				msgs = append(msgs, ChatMessage{Role: m.Role, Content: m.Content})
			}
			opts := RenderOptions{
				AddGenerationPrompt: c.AddGenerationPrompt,
				BOSToken:            tok.bosToken,
				EOSToken:            tok.eosToken,
				Extra:               map[string]any{},
			}
			for k, v := range c.Extra {
				opts.Extra[k] = v
			}
			if c.Tools {
				opts.Extra["tools"] = g.Tools
			}
			got, err := tmpl.Render(msgs, opts)
			if c.Output == nil {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.Error)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, *c.Output, got)
		})
	}
}

type featureGolden struct {
	Features []struct {
		Name     string  `json:"name"`
		Template string  `json:"template"`
		Output   *string `json:"output"`
		Error    string  `json:"error"`
	} `json:"features"`
	Context json.RawMessage `json:"feature_context"`
}

// TestGoldenJinjaFeatures renders small templates for each Jinja feature
// chat templates rely on, against @huggingface/jinja's output.
func TestGoldenJinjaFeatures(t *testing.T) {
	var g featureGolden
	readGolden(t, "chat_golden.json", &g)
	require.NotEmpty(t, g.Features)
	var ctx map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(g.Context, &ctx))
	var msgs []ChatMessage
	var opts RenderOptions
	require.NoError(t, json.Unmarshal(ctx["messages"], &msgs))
	require.NoError(t, json.Unmarshal(ctx["bos_token"], &opts.BOSToken))
	require.NoError(t, json.Unmarshal(ctx["add_generation_prompt"], &opts.AddGenerationPrompt))
	opts.Extra = map[string]any{}
	for k, v := range ctx {
		switch k {
		case "messages", "bos_token", "add_generation_prompt":
		default:
			opts.Extra[k] = v // json.RawMessage: key order kept
		}
	}
	for _, f := range g.Features {
		t.Run(f.Name, func(t *testing.T) {
			c, err := LoadChatTemplate(f.Template)
			require.NoError(t, err)
			got, err := c.Render(msgs, opts)
			if f.Output == nil {
				require.Error(t, err)
				assert.Contains(t, err.Error(), f.Error)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, *f.Output, got)
		})
	}
}
