package tokenizer

import (
	"strings"
	"testing"
	"time"

	"github.com/vserve/vserve/internal/cputime"
)

// reportRates reports tokens per wall second and, where the platform tells
// CPU time, tokens per CPU second (more stable on a loaded machine).
func reportRates(b *testing.B, tokensPerOp int, cpuStart time.Duration) {
	b.ReportMetric(float64(tokensPerOp*b.N)/b.Elapsed().Seconds(), "tokens/s")
	if cpu := cputime.Process() - cpuStart; cpu > 0 {
		b.ReportMetric(float64(tokensPerOp*b.N)/cpu.Seconds(), "tokens/cpu-s")
	}
}

// benchParagraph is English prose with some digits, punctuation, code and
// non-ASCII text (825 bytes).
var benchParagraph = strings.Repeat("Once upon a time, in a small village by the sea, there lived a girl named Lily. "+
	"She loved to collect shells: 12 white ones, 7 pink ones and 1 very rare blue one! "+
	"Every morning she'd say \"I'm going to find the 100th shell today.\" ", 3) +
	"def count(shells):\n    return sum(1 for s in shells if s.color == 'blue')\n" +
	"Café, naïve, 你好世界, Привет мир. 😀 The end.\n"

// BenchmarkEncode measures Encode on a paragraph per tokenizer family and
// reports tokens per second. The per-word cache is warm after the first
// iteration, as in a server.
func BenchmarkEncode(b *testing.B) {
	for _, dir := range []string{
		"tokenizers/llama2", "tokenizers/mistral", "tokenizers/llama3",
		"tokenizers/qwen2.5", "tokenizers/gpt2", "models/stories260K/hf",
	} {
		b.Run(strings.ReplaceAll(dir, "/", "_"), func(b *testing.B) {
			tok := loadShared(b, dir)
			n := len(tok.Encode(benchParagraph, false))
			b.SetBytes(int64(len(benchParagraph)))
			b.ResetTimer()
			cpu := cputime.Process()
			for b.Loop() {
				tok.Encode(benchParagraph, false)
			}
			reportRates(b, n, cpu)
		})
	}
}

// BenchmarkEncodeCold is BenchmarkEncode with the per-word cache emptied
// before every iteration (a first request, or text with few repeats).
func BenchmarkEncodeCold(b *testing.B) {
	for _, dir := range []string{"tokenizers/llama2", "tokenizers/llama3", "tokenizers/qwen2.5", "tokenizers/gpt2"} {
		b.Run(strings.ReplaceAll(dir, "/", "_"), func(b *testing.B) {
			tok := loadShared(b, dir)
			n := len(tok.Encode(benchParagraph, false))
			b.SetBytes(int64(len(benchParagraph)))
			b.ResetTimer()
			cpu := cputime.Process()
			for b.Loop() {
				tok.model.cache.init(maxCachedWords)
				tok.Encode(benchParagraph, false)
			}
			reportRates(b, n, cpu)
		})
	}
}

// BenchmarkChatTemplate renders a four-message conversation.
func BenchmarkChatTemplate(b *testing.B) {
	msgs := []ChatMessage{
		{Role: "system", Content: "You are a helpful assistant."},
		{Role: "user", Content: "What is the capital of France?"},
		{Role: "assistant", Content: "The capital of France is Paris."},
		{Role: "user", Content: "And Germany?"},
	}
	for _, dir := range []string{"tokenizers/llama3", "tokenizers/qwen2.5"} {
		b.Run(strings.ReplaceAll(dir, "/", "_"), func(b *testing.B) {
			tok := loadShared(b, dir)
			opts := RenderOptions{AddGenerationPrompt: true, Extra: map[string]any{"date_string": "26 Jul 2024"}}
			for b.Loop() {
				if _, err := tok.ApplyChatTemplate(msgs, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeIncremental measures streaming detokenization per token.
func BenchmarkDecodeIncremental(b *testing.B) {
	for _, dir := range []string{"tokenizers/llama2", "tokenizers/llama3"} {
		b.Run(strings.ReplaceAll(dir, "/", "_"), func(b *testing.B) {
			tok := loadShared(b, dir)
			ids := tok.Encode(benchParagraph, false)
			b.ResetTimer()
			cpu := cputime.Process()
			for b.Loop() {
				d := tok.NewIncrementalDecoder(nil, true)
				for _, id := range ids {
					d.Add(id)
				}
			}
			reportRates(b, len(ids), cpu)
		})
	}
}
