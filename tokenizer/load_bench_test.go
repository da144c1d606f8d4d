package tokenizer

import (
	"testing"

	"github.com/vserve/vserve/internal/sharedtest"
)

func BenchmarkLoadDir(b *testing.B) {
	for _, dir := range []string{"llama2", "llama3", "qwen2.5", "mistral", "gpt2"} {
		b.Run(dir, func(b *testing.B) {
			path := sharedtest.Path(b, "tokenizers", dir)
			for b.Loop() {
				if _, err := LoadDir(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
