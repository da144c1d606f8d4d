// Command vserve serves an LLM over an OpenAI-compatible HTTP API. See
// `vserve -h` for the flags (vLLM's names); with no --model it serves a
// built-in model with random weights.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vserve/vserve/cmd/vserve/app"
)

func main() {
	cfg, err := app.ParseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vserve: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	log := app.NewLogger(os.Stderr, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// The first signal starts the graceful drain; with the handler
		// gone, a second one ends the process at once.
		<-ctx.Done()
		stop()
	}()
	if err := app.Run(ctx, cfg, log, os.Stderr); err != nil {
		log.Error("vserve failed", "err", err)
		os.Exit(1)
	}
}
