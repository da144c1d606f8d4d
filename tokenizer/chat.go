package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/ardanlabs/jinja"
)

// ChatMessage is one message of a conversation. Content is the flattened
// text (the HTTP layer joins a list of {type: text} parts). Optional fields
// are passed to the template only when set, so that `is defined` tests in
// templates behave as with transformers.
type ChatMessage struct {
	Role       string
	Content    string
	Name       string
	ToolCallID string
	// ToolCalls are passed as given; json.RawMessage values keep their key
	// order (see RenderOptions.Extra).
	ToolCalls []any
	// Extra holds further message fields (e.g. "reasoning_content").
	Extra map[string]any
}

// RenderOptions are the template variables besides messages.
type RenderOptions struct {
	AddGenerationPrompt bool
	// ContinueFinalMessage ends the prompt right after the content of the
	// last message (to let the model continue it), as transformers'
	// continue_final_message does. It excludes AddGenerationPrompt.
	ContinueFinalMessage bool
	BOSToken, EOSToken   string
	// Extra holds further variables, e.g. "tools", "documents",
	// "date_string", "enable_thinking". Values may be plain Go values
	// (maps are iterated in sorted key order), json.RawMessage (decoded
	// keeping the key order, which matters for tool schemas rendered with
	// tojson) or jinja.Value.
	Extra map[string]any
}

// ChatTemplate is a compiled chat template.
type ChatTemplate struct {
	source string
	tmpl   *jinja.Template
}

// LoadChatTemplate compiles a Jinja chat template.
func LoadChatTemplate(source string) (c *ChatTemplate, err error) {
	defer recoverEngine(&err)
	t, err := jinja.Compile(rewriteFilters(jinjaLines(source)))
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	return &ChatTemplate{source: source, tmpl: t}, nil
}

// jinjaLines does to the source what Jinja2 does with transformers'
// settings (keep_trailing_newline off, newline_sequence "\n") before
// lexing: every line break becomes "\n" and one line break at the end is
// dropped, so a template file's final newline is not part of the prompt.
func jinjaLines(source string) string {
	source = strings.ReplaceAll(source, "\r\n", "\n")
	source = strings.ReplaceAll(source, "\r", "\n")
	return strings.TrimSuffix(source, "\n")
}

// LoadChatTemplateFile compiles the chat template in a .jinja file.
func LoadChatTemplateFile(path string) (*ChatTemplate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := LoadChatTemplate(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Source returns the template text.
func (c *ChatTemplate) Source() string { return c.source }

// Render renders the conversation into a prompt string. Errors raised by
// the template (raise_exception) are returned.
func (c *ChatTemplate) Render(messages []ChatMessage, opts RenderOptions) (_ string, err error) {
	defer recoverEngine(&err)
	data := make(map[string]jinja.Value, len(opts.Extra)+8)
	// transformers always passes tools and documents (None when absent),
	// so `tools is not none` is false rather than true for undefined.
	data["tools"] = jinja.None()
	data["documents"] = jinja.None()
	for k, v := range opts.Extra {
		val, err := toValue(v)
		if err != nil {
			return "", fmt.Errorf("chat template variable %q: %w", k, err)
		}
		data[k] = val
	}
	msgs := make([]jinja.Value, len(messages))
	for i, m := range messages {
		v, err := messageValue(m)
		if err != nil {
			return "", fmt.Errorf("messages[%d]: %w", i, err)
		}
		msgs[i] = v
	}
	data["messages"] = jinja.NewList(msgs)
	data["add_generation_prompt"] = jinja.NewBool(opts.AddGenerationPrompt)
	data["bos_token"] = jinja.NewString(opts.BOSToken)
	data["eos_token"] = jinja.NewString(opts.EOSToken)
	for name, fn := range templateFilters {
		data[name] = fn
	}
	if opts.ContinueFinalMessage && opts.AddGenerationPrompt {
		return "", fmt.Errorf("chat template: continue_final_message and add_generation_prompt exclude each other")
	}
	out, err := c.tmpl.RenderValues(data)
	if err != nil {
		return "", fmt.Errorf("chat template: %w", err)
	}
	if opts.ContinueFinalMessage {
		return cutAfterFinalMessage(out, messages)
	}
	return out, nil
}

// cutAfterFinalMessage drops what the template wrote after the last
// message's content (its end-of-turn marker); templates that strip
// contents are matched by the stripped content.
func cutAfterFinalMessage(out string, messages []ChatMessage) (string, error) {
	if len(messages) == 0 {
		return "", fmt.Errorf("chat template: continue_final_message needs a message")
	}
	final := messages[len(messages)-1].Content
	for _, s := range []string{final, strings.TrimSpace(final)} {
		if i := strings.LastIndex(out, s); i >= 0 {
			return out[:i+len(s)], nil
		}
	}
	return "", fmt.Errorf("chat template: the final message's content is not in the rendered prompt")
}

// recoverEngine turns a panic inside the template engine into an error, so
// that a malformed template or odd variables fail one request rather than
// the server.
func recoverEngine(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("chat template: engine panic: %v", r)
	}
}

func messageValue(m ChatMessage) (jinja.Value, error) {
	d := jinja.NewDict()
	dict := d.AsDict()
	dict.Set("role", jinja.NewString(m.Role))
	dict.Set("content", jinja.NewString(m.Content))
	if m.Name != "" {
		dict.Set("name", jinja.NewString(m.Name))
	}
	if m.ToolCallID != "" {
		dict.Set("tool_call_id", jinja.NewString(m.ToolCallID))
	}
	if m.ToolCalls != nil {
		v, err := toValue(m.ToolCalls)
		if err != nil {
			return jinja.Value{}, fmt.Errorf("tool_calls: %w", err)
		}
		dict.Set("tool_calls", v)
	}
	for _, k := range sortedKeys(m.Extra) {
		v, err := toValue(m.Extra[k])
		if err != nil {
			return jinja.Value{}, fmt.Errorf("%s: %w", k, err)
		}
		dict.Set(k, v)
	}
	return d, nil
}

// filterUse matches a use of a filter we replace, e.g. "| tojson".
var filterUse = regexp.MustCompile(`\|\s*tojson\b`)

// tagPattern matches Jinja expression and statement tags.
var tagPattern = regexp.MustCompile(`(?s)\{\{.*?\}\}|\{%.*?%\}`)

// generationTag matches transformers' {% generation %} and
// {% endgeneration %} tags (they mark assistant text for training masks and
// render their body unchanged).
var generationTag = regexp.MustCompile(`^\{%(-?)\s*(end)?generation\s*(-?)%\}$`)

// rewriteFilters adapts a transformers template to the engine, inside tags
// and outside string literals: it renames the filters vserve implements
// itself (the engine's tojson sorts keys and escapes HTML when indenting,
// unlike the Python json.dumps that transformers uses), and turns
// {% generation %} blocks into always-true ifs, keeping whitespace control.
func rewriteFilters(src string) string {
	return tagPattern.ReplaceAllStringFunc(src, func(tag string) string {
		if m := generationTag.FindStringSubmatch(tag); m != nil {
			if m[2] != "" {
				return "{%" + m[1] + " endif " + m[3] + "%}"
			}
			return "{%" + m[1] + " if true " + m[3] + "%}"
		}
		var b strings.Builder
		for _, part := range splitQuoted(tag) {
			if part.quoted {
				b.WriteString(part.text)
			} else {
				b.WriteString(filterUse.ReplaceAllString(part.text, "| vserve_tojson"))
			}
		}
		return b.String()
	})
}

type quotedPart struct {
	text   string
	quoted bool
}

// splitQuoted cuts a tag into string literals ('...' or "..." with
// backslash escapes) and the code between them.
func splitQuoted(s string) []quotedPart {
	var parts []quotedPart
	start := 0
	for i := 0; i < len(s); i++ {
		q := s[i]
		if q != '\'' && q != '"' {
			continue
		}
		j := i + 1
		for j < len(s) && s[j] != q {
			if s[j] == '\\' {
				j++
			}
			j++
		}
		end := min(j+1, len(s))
		parts = append(parts, quotedPart{s[start:i], false}, quotedPart{s[i:end], true})
		start, i = end, end-1
	}
	return append(parts, quotedPart{s[start:], false})
}

var templateFilters = map[string]jinja.Value{
	"vserve_tojson": jinja.NewCallable("tojson", pyToJSON),
}

// toValue converts an Extra value to a template value.
func toValue(v any) (jinja.Value, error) {
	switch x := v.(type) {
	case jinja.Value:
		return x, nil
	case json.RawMessage:
		return jsonToValue(x)
	case []any:
		items := make([]jinja.Value, len(x))
		for i, e := range x {
			iv, err := toValue(e)
			if err != nil {
				return jinja.Value{}, err
			}
			items[i] = iv
		}
		return jinja.NewList(items), nil
	case map[string]any:
		d := jinja.NewDict()
		for _, k := range sortedKeys(x) {
			iv, err := toValue(x[k])
			if err != nil {
				return jinja.Value{}, err
			}
			d.AsDict().Set(k, iv)
		}
		return d, nil
	case int32:
		return jinja.NewInt(int64(x)), nil
	case float32:
		return jinja.NewFloat(float64(x)), nil
	case []string:
		items := make([]jinja.Value, len(x))
		for i, s := range x {
			items[i] = jinja.NewString(s)
		}
		return jinja.NewList(items), nil
	}
	val := jinja.FromGoValue(v)
	if val.IsUndefined() {
		return val, fmt.Errorf("unsupported Go type %T", v)
	}
	return val, nil
}

// setChatTemplates compiles the config's chat_template(s).
func (t *Tokenizer) setChatTemplates(spec chatTemplateSpec) error {
	if len(spec.named) == 0 {
		return nil
	}
	t.namedChats = make(map[string]*ChatTemplate, len(spec.named))
	for _, name := range spec.order {
		c, err := LoadChatTemplate(spec.named[name])
		if err != nil {
			return fmt.Errorf("chat_template %q: %w", name, err)
		}
		t.namedChats[name] = c
	}
	t.chat = t.namedChats["default"]
	if t.chat == nil && len(spec.order) == 1 {
		t.chat = t.namedChats[spec.order[0]]
	}
	return nil
}

// ApplyChatTemplate renders messages with the default chat template,
// filling BOSToken and EOSToken from tokenizer_config.json when opts leaves
// them empty and passing unk_token, pad_token and
// additional_special_tokens as transformers does (opts.Extra wins). It
// fails when the model has no chat template.
func (t *Tokenizer) ApplyChatTemplate(messages []ChatMessage, opts RenderOptions) (string, error) {
	if t.chat == nil {
		return "", fmt.Errorf("chat template: the model has none")
	}
	if opts.BOSToken == "" {
		opts.BOSToken = t.bosToken
	}
	if opts.EOSToken == "" {
		opts.EOSToken = t.eosToken
	}
	if len(t.templateTokens) > 0 {
		extra := make(map[string]any, len(opts.Extra)+len(t.templateTokens))
		for k, v := range t.templateTokens {
			extra[k] = v
		}
		for k, v := range opts.Extra {
			extra[k] = v
		}
		opts.Extra = extra
	}
	return t.chat.Render(messages, opts)
}
