// Command vserve-bench benchmarks OpenAI-compatible servers (vserve or any
// other) the way `vllm bench serve` does, compares two of them side by side,
// sweeps concurrency, and writes a full vserve performance report.
//
//	vserve-bench run     --base-url http://127.0.0.1:8000 --tokenizer DIR --max-concurrency 16
//	vserve-bench compare --base-url URL_A --compare-url URL_B --tokenizer DIR
//	vserve-bench sweep   --base-url URL --tokenizer DIR --concurrency 1,4,16,64
//	vserve-bench report  --shape 110M --out report.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(ctx, os.Args[2:])
	case "compare":
		err = cmdCompare(ctx, os.Args[2:])
	case "sweep":
		err = cmdSweep(ctx, os.Args[2:])
	case "report":
		err = cmdReport(ctx, os.Args[2:])
	case "-h", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "vserve-bench: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vserve-bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: vserve-bench <command> [flags]

commands:
  run      one load run against one endpoint
  compare  the same workload against two endpoints, interleaved, with ratios
  sweep    one run per concurrency level, each on prompts of its own (so that no
           level hits the prompts of another in the prefix cache), with a
           throughput plot
  report   micro-benchmarks, kernel benchmarks and an end-to-end sweep of vserve
           on a generated random model, as one markdown report

'vserve-bench <command> -h' lists the flags of a command.
`)
}
