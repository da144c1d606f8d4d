package tokenizer

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// streamAll feeds ids to an incremental decoder one by one and returns the
// deltas.
func streamAll(tok *Tokenizer, prompt, gen []int32, skip bool) []string {
	d := tok.NewIncrementalDecoder(prompt, skip)
	var out []string
	for _, id := range gen {
		out = append(out, d.Add(id))
	}
	return append(out, d.Flush())
}

func TestIncrementalDecoderMatchesDecode(t *testing.T) {
	var g encodeGolden
	readGolden(t, "encode_golden.json", &g)
	for dir, cases := range g.Tokenizers {
		t.Run(dir, func(t *testing.T) {
			tok := loadShared(t, dir)
			for _, c := range cases {
				ids := c.IDsNoSpecial
				for _, skip := range []bool{false, true} {
					for _, split := range []int{0, len(ids) / 3, len(ids) / 2} {
						prompt, gen := ids[:split], ids[split:]
						whole := tok.decodeRaw(ids, skip)
						head := tok.decodeRaw(prompt, skip)
						if !strings.HasPrefix(whole, head) || strings.HasSuffix(head, "\uFFFD") {
							continue // the prompt ends inside a character
						}
						deltas := streamAll(tok, prompt, gen, skip)
						assert.Equal(t, whole[len(head):], strings.Join(deltas, ""),
							"text %q split at %d skip=%v", c.Text, split, skip)
						for _, d := range deltas[:len(deltas)-1] {
							assert.True(t, utf8.ValidString(d), "delta %q is not valid UTF-8", d)
							if !strings.Contains(c.Text, "\uFFFD") {
								assert.NotContains(t, d, "\uFFFD", "text %q", c.Text)
							}
						}
					}
				}
			}
		})
	}
}

func TestIncrementalDecoderLeadingSpace(t *testing.T) {
	tok := loadShared(t, "models/stories260K/hf")
	prompt := tok.Encode("Once upon a time", true)
	gen := tok.Encode("Once upon a time there was", true)[len(prompt):]
	require.NotEmpty(t, gen)
	deltas := streamAll(tok, prompt, gen, true)
	assert.Equal(t, " there was", strings.Join(deltas, ""))
	assert.True(t, strings.HasPrefix(deltas[0], " "), "first delta %q keeps its space", deltas[0])
}

func TestIncrementalDecoderHoldsPartialUTF8(t *testing.T) {
	for _, dir := range []string{"tokenizers/gpt2", "tokenizers/llama2"} {
		t.Run(dir, func(t *testing.T) {
			tok := loadShared(t, dir)
			ids := tok.Encode("😀", false) // several byte tokens in both families
			require.Greater(t, len(ids), 1)
			d := tok.NewIncrementalDecoder(nil, false)
			for _, id := range ids[:len(ids)-1] {
				assert.Equal(t, "", d.Add(id))
			}
			assert.Equal(t, "😀", strings.TrimSpace(d.Add(ids[len(ids)-1])))
			assert.Equal(t, "", d.Flush())
		})
	}
}

func TestIncrementalDecoderFlushesIncompleteChar(t *testing.T) {
	tok := loadShared(t, "tokenizers/gpt2")
	ids := tok.Encode("a😀", false)
	d := tok.NewIncrementalDecoder(nil, false)
	var got string
	for _, id := range ids[:len(ids)-1] {
		got += d.Add(id)
	}
	assert.Equal(t, "a", got)
	assert.Equal(t, "\uFFFD", d.Flush())
}

func TestStopMatcher(t *testing.T) {
	tests := []struct {
		name      string
		stops     []string
		pushes    []string
		wantEmit  []string
		wantStop  int // index of the push that stops, -1 if none
		wantFlush string
	}{
		{"no stops", nil, []string{"a", "b"}, []string{"a", "b"}, -1, ""},
		{"whole stop in one piece", []string{"END"}, []string{"abcENDxyz"}, []string{"abc"}, 0, ""},
		{"stop split across pieces", []string{"END"}, []string{"ab E", "N", "D tail"}, []string{"ab ", "", ""}, 2, ""},
		{"false start is released", []string{"END"}, []string{"xE", "NX"}, []string{"x", "ENX"}, -1, ""},
		{"held text flushed at end", []string{"END"}, []string{"fooEN"}, []string{"foo"}, -1, "EN"},
		{"earliest of two stops", []string{"world", "lo"}, []string{"hello world"}, []string{"hel"}, 0, ""},
		{"stop at very start", []string{"\n\n"}, []string{"\n", "\nabc"}, []string{"", ""}, 1, ""},
		{"multibyte stop", []string{"。"}, []string{"你好", "。再见"}, []string{"你好", ""}, 1, ""},
		{"overlapping prefixes", []string{"aab"}, []string{"aa", "aab"}, []string{"", "aa"}, 1, ""},
		{"empty stop ignored", []string{""}, []string{"abc"}, []string{"abc"}, -1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewStopMatcher(tc.stops)
			for i, p := range tc.pushes {
				emit, stopped := m.Push(p)
				require.Less(t, i, len(tc.wantEmit))
				assert.Equal(t, tc.wantEmit[i], emit, "push %d", i)
				assert.Equal(t, tc.wantStop >= 0 && i >= tc.wantStop, stopped, "push %d", i)
				if stopped {
					break
				}
			}
			assert.Equal(t, tc.wantFlush, m.Flush())
		})
	}
}

func TestStopMatcherAfterStop(t *testing.T) {
	m := NewStopMatcher([]string{"x"})
	_, stopped := m.Push("ax")
	require.True(t, stopped)
	emit, stopped := m.Push("more")
	assert.Equal(t, "", emit)
	assert.True(t, stopped)
	assert.True(t, m.Stopped())
}

func TestTokenText(t *testing.T) {
	sp := tinySP(t)
	assert.Equal(t, " abc", sp.TokenText(spMetaABC), "the space of ▁ is kept")
	assert.Equal(t, "abc", sp.TokenText(spABC))
	assert.Equal(t, "<s>", sp.TokenText(1), "special tokens are spelled out")
	assert.Equal(t, "\uFFFD", sp.TokenText(3+0xC3), "half a character")
	assert.Equal(t, "A", sp.TokenText(3+'A'))
	bl := tinyBL(t)
	world, _ := bl.TokenToID("Ġworld")
	assert.Equal(t, " world", bl.TokenText(world))
	llama3 := loadShared(t, "tokenizers/llama3")
	ids := llama3.Encode(" it's", false)
	var parts []string
	for _, id := range ids {
		parts = append(parts, llama3.TokenText(id))
	}
	assert.Equal(t, " it's", strings.Join(parts, ""), "no clean-up")
	assert.Equal(t, "<|eot_id|>", llama3.TokenText(128009))
}
