package runner

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/scheduler"
)

func tinyModel(t *testing.T, spec model.Spec) *model.Model {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "m")
	if err := model.Generate(dir, spec, 3); err != nil {
		t.Fatal(err)
	}
	return loadModel(t, dir, newCPU(t))
}

func TestNewValidates(t *testing.T) {
	m := tinyModel(t, model.SpecTiny)
	good := Config{BlockSize: 4, NumBlocks: 8, MaxNumSeqs: 2, MaxNumBatchedTokens: 16}
	tests := []struct {
		name string
		edit func(c *Config)
		err  string
	}{
		{"block size", func(c *Config) { c.BlockSize = -1 }, "BlockSize"},
		{"blocks", func(c *Config) { c.NumBlocks = 1 }, "NumBlocks"},
		{"seqs", func(c *Config) { c.MaxNumSeqs = -2 }, "MaxNumSeqs"},
		{"tokens", func(c *Config) { c.MaxNumBatchedTokens = -1 }, "MaxNumBatchedTokens"},
		{"model len", func(c *Config) { c.MaxModelLen = 10000 }, "max_position_embeddings"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			if _, err := New(m, m.Backend(), c); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one mentioning %s", err, tc.err)
			}
		})
	}
	r, err := New(m, m.Backend(), good)
	if err != nil {
		t.Fatal(err)
	}
	if r.cfg.MaxModelLen != model.SpecTiny.MaxPos {
		t.Errorf("default MaxModelLen %d", r.cfg.MaxModelLen)
	}
	r.Close()
	r2, err := New(m, m.Backend(), Config{NumBlocks: 8})
	if err != nil {
		t.Fatal(err)
	}
	if c := r2.cfg; c.BlockSize != scheduler.DefaultBlockSize || c.MaxNumBatchedTokens != scheduler.DefaultMaxNumBatchedTokens ||
		c.MaxNumSeqs != scheduler.DefaultMaxNumSeqs {
		t.Errorf("defaults %+v", c)
	}
	r2.Close()
	if _, err := r.Execute(&scheduler.Output{}); err != ErrClosed {
		t.Errorf("Execute after Close: %v", err)
	}
	want := 2 * m.Config.NumLayers * 16 * m.Config.KVDim() * 4
	if got := m.KVBytesPerBlock(16); got != int64(want) {
		t.Errorf("KVBytesPerBlock %d, want %d", got, want)
	}
	if n := NumBlocksForMemory(m, 16, int64(want)*10+5); n != 10 {
		t.Errorf("NumBlocksForMemory %d", n)
	}
}

func TestSlidingWindowCapsModelLen(t *testing.T) {
	spec := model.Spec{Name: "m", Architecture: model.ArchMistral, Hidden: 16, Intermediate: 16, Layers: 1, Heads: 2,
		Vocab: 300, MaxPos: 128}
	dir := filepath.Join(t.TempDir(), "m")
	if err := model.Generate(dir, spec, 1); err != nil {
		t.Fatal(err)
	}
	// Give the generated config a 32-token sliding window.
	cfgPath := filepath.Join(dir, "config.json")
	data := readFile(t, cfgPath)
	writeFile(t, cfgPath, strings.Replace(data, `"max_position_embeddings": 128`, `"max_position_embeddings": 128, "sliding_window": 32`, 1))
	m := loadModel(t, dir, newCPU(t))
	if _, err := New(m, m.Backend(), Config{BlockSize: 4, NumBlocks: 8, MaxNumSeqs: 1, MaxNumBatchedTokens: 8, MaxModelLen: 64}); err == nil ||
		!strings.Contains(err.Error(), "sliding window 32") {
		t.Fatalf("error %v", err)
	}
	r, err := New(m, m.Backend(), Config{BlockSize: 4, NumBlocks: 8, MaxNumSeqs: 1, MaxNumBatchedTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cfg.MaxModelLen != 32 {
		t.Errorf("MaxModelLen %d, want the window 32", r.cfg.MaxModelLen)
	}
}

func TestExecuteRejectsInconsistentOutputs(t *testing.T) {
	m := tinyModel(t, model.SpecTiny)
	p := greedy(4)
	newReq := func(id string, n int, blocks ...int32) scheduler.NewRequest {
		return scheduler.NewRequest{ID: id, PromptTokenIDs: make([]int32, n), BlockIDs: blocks, Params: &p}
	}
	tests := []struct {
		name string
		out  scheduler.Output
		err  string
	}{
		{"unknown cached", scheduler.Output{CachedRequests: []scheduler.CachedRequest{{ID: "x"}}}, "unknown"},
		{"past the tokens", scheduler.Output{NewRequests: []scheduler.NewRequest{newReq("a", 3, 1)},
			NumScheduledTokens: map[string]int{"a": 4}}, "holds 3 tokens"},
		{"too few blocks", scheduler.Output{NewRequests: []scheduler.NewRequest{newReq("a", 6, 1)},
			NumScheduledTokens: map[string]int{"a": 6}}, "needs 2 blocks"},
		{"block out of range", scheduler.Output{NewRequests: []scheduler.NewRequest{newReq("a", 3, 99)},
			NumScheduledTokens: map[string]int{"a": 3}}, "block id 99"},
		{"token budget", scheduler.Output{NewRequests: []scheduler.NewRequest{newReq("a", 20, 1, 2, 3, 4, 5)},
			NumScheduledTokens: map[string]int{"a": 20}}, "MaxNumBatchedTokens"},
		{"total mismatch", scheduler.Output{NewRequests: []scheduler.NewRequest{newReq("a", 3, 1)},
			NumScheduledTokens: map[string]int{"a": 3}, TotalNumScheduledTokens: 5}, "TotalNumScheduledTokens"},
		{"no params", scheduler.Output{NewRequests: []scheduler.NewRequest{{ID: "a", PromptTokenIDs: []int32{1}}}}, "no sampling params"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(t, m, m.Backend(), Config{BlockSize: 4, NumBlocks: 8, MaxNumSeqs: 2, MaxNumBatchedTokens: 16})
			if _, err := r.Execute(&tc.out); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}
