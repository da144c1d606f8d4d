// Package sharedtest locates the workspace's shared/ folder (real models and
// tokenizer files that sit beside the repository as ../shared) for tests, and
// skips the calling test cleanly when it is absent, as it is in a user's
// fresh clone.
package sharedtest

import (
	"os"
	"path/filepath"
	"testing"
)

// Root returns the repository root: the nearest directory above the working
// directory that holds go.mod. It returns "" when there is none.
func Root() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Dir returns ../shared/<elem...> relative to the repository root, or ""
// when that path does not exist. VSERVE_SHARED overrides the shared folder.
func Dir(elem ...string) string {
	base := os.Getenv("VSERVE_SHARED")
	if base == "" {
		root := Root()
		if root == "" {
			return ""
		}
		base = filepath.Join(root, "..", "shared")
	}
	p := filepath.Join(append([]string{base}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// Path is Dir for tests: it skips t when the path is absent.
func Path(t testing.TB, elem ...string) string {
	t.Helper()
	p := Dir(elem...)
	if p == "" {
		t.Skipf("shared data %v not present (../shared is absent in a fresh clone)", filepath.Join(elem...))
	}
	return p
}
