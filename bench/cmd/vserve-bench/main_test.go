package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"testing"
)

// Every command must define its flags without clashes and answer -h.
func TestCommandsParseHelp(t *testing.T) {
	stderr := os.Stderr
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	os.Stderr = devnull
	defer func() { os.Stderr = stderr }()
	for name, cmd := range map[string]func(context.Context, []string) error{
		"run": cmdRun, "compare": cmdCompare, "sweep": cmdSweep, "report": cmdReport,
	} {
		if err := cmd(context.Background(), []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s -h: got %v, want flag.ErrHelp", name, err)
		}
	}
}

func TestBadFlagValues(t *testing.T) {
	ctx := context.Background()
	if err := cmdSweep(ctx, []string{"--concurrency", "1,x"}); err == nil {
		t.Error("sweep accepted a bad concurrency list")
	}
	if err := cmdRun(ctx, []string{"--endpoint-type", "embeddings"}); err == nil {
		t.Error("run accepted an unknown endpoint type")
	}
	if err := cmdRun(ctx, []string{"--dataset", "nope", "--tokenizer", ""}); err == nil {
		t.Error("run accepted an unknown dataset")
	}
	if err := cmdCompare(ctx, nil); err == nil {
		t.Error("compare ran without --compare-url")
	}
}
