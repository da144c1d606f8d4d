package tokenizer

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ardanlabs/jinja"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func render(t *testing.T, src string, msgs []ChatMessage, opts RenderOptions) string {
	t.Helper()
	c, err := LoadChatTemplate(src)
	require.NoError(t, err)
	out, err := c.Render(msgs, opts)
	require.NoError(t, err)
	return out
}

func TestStrftimeNow(t *testing.T) {
	before := time.Now().Format("02 Jan 2006")
	got := render(t, `{{ strftime_now("%d %b %Y") }}`, nil, RenderOptions{})
	after := time.Now().Format("02 Jan 2006")
	assert.Contains(t, []string{before, after}, got)
}

func TestLlama3TemplateUsesTodayWithoutDateString(t *testing.T) {
	tok := loadShared(t, "tokenizers/llama3")
	before := time.Now().Format("02 Jan 2006")
	out, err := tok.ApplyChatTemplate([]ChatMessage{{Role: "user", Content: "hi"}}, RenderOptions{AddGenerationPrompt: true})
	require.NoError(t, err)
	after := time.Now().Format("02 Jan 2006")
	assert.True(t, strings.Contains(out, "Today Date: "+before) || strings.Contains(out, "Today Date: "+after), out)
	assert.True(t, strings.HasPrefix(out, "<|begin_of_text|>"))
	assert.True(t, strings.HasSuffix(out, "<|start_header_id|>assistant<|end_header_id|>\n\n"))
}

func TestRaiseException(t *testing.T) {
	c, err := LoadChatTemplate(`{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok`)
	require.NoError(t, err)
	_, err = c.Render([]ChatMessage{{Role: "assistant", Content: "x"}}, RenderOptions{})
	assert.ErrorContains(t, err, "first message must be from the user")
	out, err := c.Render([]ChatMessage{{Role: "user", Content: "x"}}, RenderOptions{})
	require.NoError(t, err)
	assert.Equal(t, "ok", out)
}

func TestMessageOptionalFields(t *testing.T) {
	src := `{% for m in messages %}{{ m.role }}{% if m.name is defined %}({{ m.name }}){% endif %}` +
		`{% if m.tool_calls is defined %}{% for c in m.tool_calls %}[{{ c.function.name }} {{ c.function.arguments | tojson }}]{% endfor %}{% endif %}` +
		`{% if m.tool_call_id is defined %}<{{ m.tool_call_id }}>{% endif %}{% if m.reasoning is defined %}~{{ m.reasoning }}{% endif %}: {{ m.content }}
{% endfor %}`
	msgs := []ChatMessage{
		{Role: "user", Content: "weather?", Name: "ann"},
		{Role: "assistant", Content: "", ToolCalls: []any{json.RawMessage(`{"type": "function", "function": {"name": "get", "arguments": {"city": "Paris", "a": 1}}}`)}},
		{Role: "tool", Content: "sunny", ToolCallID: "call_1"},
		{Role: "assistant", Content: "It is sunny.", Extra: map[string]any{"reasoning": "easy"}},
	}
	got := render(t, src, msgs, RenderOptions{})
	assert.Equal(t, "user(ann): weather?\nassistant[get {\"city\": \"Paris\", \"a\": 1}]: \ntool<call_1>: sunny\nassistant~easy: It is sunny.\n", got)
}

func TestRenderOptionsVariables(t *testing.T) {
	got := render(t, `{{ bos_token }}{{ messages | length }}{% if add_generation_prompt %}G{% endif %}{{ eos_token }}{{ custom }}{{ v.x }}`,
		[]ChatMessage{{Role: "user", Content: "a"}},
		RenderOptions{AddGenerationPrompt: true, BOSToken: "<s>", EOSToken: "</s>", Extra: map[string]any{
			"custom": "C", "v": jinja.FromGoValue(map[string]any{"x": int64(7)}),
		}})
	assert.Equal(t, "<s>1G</s>C7", got)
	_, err := (&ChatTemplate{tmpl: mustCompile(t, "x")}).Render(nil, RenderOptions{Extra: map[string]any{"bad": struct{}{}}})
	assert.ErrorContains(t, err, "unsupported Go type")
}

func mustCompile(t *testing.T, src string) *jinja.Template {
	tmpl, err := jinja.Compile(src)
	require.NoError(t, err)
	return tmpl
}

func TestTemplateErrors(t *testing.T) {
	_, err := LoadChatTemplate("{% for x in %}")
	assert.Error(t, err)
	_, err = LoadChatTemplateFile("testdata/no-such-file.jinja")
	assert.Error(t, err)
	tok := tinySP(t)
	_, err = tok.ApplyChatTemplate(nil, RenderOptions{})
	assert.ErrorContains(t, err, "has none")
}

func TestPyToJSON(t *testing.T) {
	tests := []struct {
		name, src string
		want      string
	}{
		{"floats", `{{ [1.0, 0.1, 1.5, -2.5, 100.0] | tojson }}{{ big | tojson }}{{ small | tojson }}`, `[1.0, 0.1, 1.5, -2.5, 100.0]1e+16-1.5e-07`},
		{"escapes", `{{ str | tojson }}`, `"a\"b\\c\n\t<&>é\u0001 "`},
		{"sort_keys", `{{ {"b": 1, "a": 2} | tojson(sort_keys=true) }}`, `{"a": 2, "b": 1}`},
		{"separators", `{{ {"b": [1, 2]} | tojson(separators=(",", ":")) }}`, `{"b":[1,2]}`},
		{"empty", `{{ {} | tojson(indent=2) }}{{ [] | tojson }}`, `{}[]`},
		{"ensure_ascii", `{{ "é😀" | tojson(ensure_ascii=true) }}`, `"\u00e9\ud83d\ude00"`},
		{"nested indent", `{{ {"a": [1, {"b": null}]} | tojson(indent=2) }}`, "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ]\n}"},
		{"not a filter elsewhere", `tojson {{ "| tojson" }}`, `tojson | tojson`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			extra := map[string]any{"big": 1e16, "small": -1.5e-7, "str": "a\"b\\c\n\t<&>é\x01 "}
			assert.Equal(t, tc.want, render(t, tc.src, nil, RenderOptions{Extra: extra}))
		})
	}
}

func TestContinueFinalMessage(t *testing.T) {
	tok := loadShared(t, "tokenizers/qwen2.5")
	msgs := []ChatMessage{{Role: "user", Content: "Count to 3."}, {Role: "assistant", Content: "1, 2,"}}
	out, err := tok.ApplyChatTemplate(msgs, RenderOptions{ContinueFinalMessage: true})
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(out, "<|im_start|>assistant\n1, 2,"), out)
	llama3 := loadShared(t, "tokenizers/llama3")
	msgs[1].Content = "  1, 2,  " // Llama 3's template strips contents
	out, err = llama3.ApplyChatTemplate(msgs, RenderOptions{ContinueFinalMessage: true, Extra: map[string]any{"date_string": "1 Jan 2025"}})
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(out, "<|start_header_id|>assistant<|end_header_id|>\n\n1, 2,"), out)
	_, err = tok.ApplyChatTemplate(msgs, RenderOptions{ContinueFinalMessage: true, AddGenerationPrompt: true})
	assert.Error(t, err)
}

func TestToolsDefaultToNone(t *testing.T) {
	src := `{% if tools is not none %}T{% else %}-{% endif %}{% if documents is none %}D{% endif %}{% if tools is defined %}d{% endif %}`
	assert.Equal(t, "-Dd", render(t, src, nil, RenderOptions{}))
	assert.Equal(t, "TDd", render(t, src, nil, RenderOptions{Extra: map[string]any{"tools": json.RawMessage(`[]`)}}))
}

func TestGenerationTag(t *testing.T) {
	src := "{% for m in messages %}{% if m.role == 'assistant' %}{%- generation -%}  [{{ m.content }}]  {%- endgeneration -%}{% else %}({{ m.content }}){% endif %}{% endfor %}"
	got := render(t, src, []ChatMessage{{Role: "user", Content: "q"}, {Role: "assistant", Content: "a"}}, RenderOptions{})
	assert.Equal(t, "(q)[a]", got)
}

func TestEnginePanicBecomesError(t *testing.T) {
	c, err := LoadChatTemplate("{{ boom() }}")
	require.NoError(t, err)
	boom := jinja.NewCallable("boom", func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) { panic("kaput") })
	_, err = c.Render(nil, RenderOptions{Extra: map[string]any{"boom": boom}})
	assert.ErrorContains(t, err, "kaput")
}

// TestTemplateLineBreaks: as Jinja2 with transformers' settings renders
// them, one line break at the end of the source is dropped and "\r\n" and
// "\r" become "\n" (expected values from Python jinja2 3.1).
func TestTemplateLineBreaks(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"{{ 'x' }}\n", "x"},
		{"a\n\n", "a\n"},
		{"a\r\nb\r\n", "a\nb"},
		{"a\rb", "a\nb"},
		{"{% if true %}\nx\n{% endif %}\n", "x\n"},
		{"{{ 'keep\\n' }}", "keep\n"},
	} {
		assert.Equal(t, tc.want, render(t, tc.src, nil, RenderOptions{}), "%q", tc.src)
	}
}
