package model_test

import (
	"fmt"
	"os"

	"github.com/vserve/vserve/runtime/kernel"
	_ "github.com/vserve/vserve/runtime/kernel/cpu"
	"github.com/vserve/vserve/runtime/model"
)

// Generate a random-weight model directory and load it on the CPU backend.
func ExampleGenerate() {
	dir, err := os.MkdirTemp("", "model-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := model.Generate(dir, model.SpecTiny, 1); err != nil {
		panic(err)
	}
	be, err := kernel.Open("cpu", kernel.Options{Threads: 1})
	if err != nil {
		panic(err)
	}
	defer be.Close()
	m, err := model.Load(dir, be, model.LoadOptions{})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	c := m.Config
	fmt.Printf("%s: %d layers, %d heads (%d kv), vocab %d, %d parameters\n",
		c.Architecture, c.NumLayers, c.NumHeads, c.NumKVHeads, c.VocabSize, c.NumParams())
	fmt.Printf("KV cache: %d bytes per 16-token block\n", m.KVBytesPerBlock(16))
	// Output:
	// LlamaForCausalLM: 2 layers, 8 heads (4 kv), vocab 512, 123712 parameters
	// KV cache: 8192 bytes per 16-token block
}
