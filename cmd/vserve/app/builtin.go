package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vserve/vserve/runtime/model"
)

// The built-in model: generated deterministically from a fixed spec and
// seed, so every machine gets the same bytes. Its weights are random, so
// its text is gibberish; it exists so that `go run ./cmd/vserve` works at
// once and to exercise the whole stack.
const (
	BuiltinName    = "vserve-tiny-random"
	builtinSeed    = 20260101
	builtinVersion = "v1" // bump when the spec or the generator changes
	// BuiltinDescription is shown by /v1/models.
	BuiltinDescription = "vserve's built-in model with RANDOM weights (tiny Llama shape): its output is gibberish. " +
		"Serve a real Hugging Face model directory with --model <dir>."
)

// builtinSpec is the built-in model's shape.
var builtinSpec = model.SpecTiny

// builtinDir returns the directory of the built-in model under cacheDir,
// generating it first when absent. Generation writes to a temporary
// directory and renames it, so concurrent starts never see half a model.
func builtinDir(cacheDir string) (string, error) {
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		cacheDir = filepath.Join(base, "vserve")
	}
	dir := filepath.Join(cacheDir, "builtin-"+builtinSpec.Name+"-"+builtinVersion)
	if complete(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("built-in model: %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".gen-*")
	if err != nil {
		return "", fmt.Errorf("built-in model: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := model.Generate(tmp, builtinSpec, builtinSeed); err != nil {
		return "", fmt.Errorf("built-in model: generate: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if complete(dir) { // another process won the race
			return dir, nil
		}
		return "", fmt.Errorf("built-in model: %w", errors.Join(err))
	}
	return dir, nil
}

func complete(dir string) bool {
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}
