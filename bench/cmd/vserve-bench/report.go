package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vserve/vserve/bench"
	"github.com/vserve/vserve/runtime/model"
)

// cmdReport measures vserve as a whole and writes one markdown report:
// scheduler/kvcache micro-benchmarks, kernel benchmarks of every backend in
// this build, and an end-to-end concurrency sweep against a vserve process
// serving a generated random model of the given shape.
func cmdReport(ctx context.Context, args []string) error {
	var c common
	var shape, out, levels, repo, benchtime, vserveBin, tags string
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	c.register(fs)
	fs.StringVar(&shape, "shape", "110M", "generated model shape (tiny, 15M, 42M, 110M, 1B)")
	fs.StringVar(&out, "out", "bench-report.md", "markdown report file")
	fs.StringVar(&levels, "concurrency", "1,4,16,64", "concurrency levels of the sweep")
	fs.StringVar(&repo, "repo", ".", "vserve repository root (for go test and go build)")
	fs.StringVar(&benchtime, "benchtime", "1s", "go test -benchtime for the micro-benchmarks")
	fs.StringVar(&vserveBin, "vserve", "", "vserve binary (default: built from --repo)")
	fs.StringVar(&tags, "tags", "", "build tags for the kernel benchmarks and the vserve build (cuda on a GPU machine: adds ./cuda/...)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	conc, err := parseInts(levels)
	if err != nil {
		return err
	}
	spec, ok := model.SpecByName(shape)
	if !ok {
		return fmt.Errorf("unknown --shape %q", shape)
	}
	work, err := os.MkdirTemp("", "vserve-report-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	var md bytes.Buffer
	fmt.Fprintf(&md, "# vserve performance report\n\n## Machine\n\n%s", bench.Machine())

	fmt.Fprintln(os.Stderr, "micro-benchmarks: scheduler, kvcache")
	micro, err := bench.GoBench(ctx, repo, "", ".", benchtime, "./scheduler/...", "./kvcache/...")
	section(&md, "Scheduler and KV cache micro-benchmarks", micro, err)
	fmt.Fprintln(os.Stderr, "kernel benchmarks")
	kernPkgs := []string{"./runtime/kernel/...", "./runtime/sample/..."}
	if strings.Contains(tags, "cuda") {
		kernPkgs = append(kernPkgs, "./cuda/...")
	}
	kern, err := bench.GoBench(ctx, repo, tags, "MatMul|PagedAttention|Sample|ReadBandwidth", benchtime, kernPkgs...)
	section(&md, "Kernel benchmarks (every backend of this build)", kern, err)

	modelDir := filepath.Join(work, "model")
	fmt.Fprintf(os.Stderr, "generating a random %s model\n", shape)
	if err := model.Generate(modelDir, spec, 1); err != nil {
		return err
	}
	if vserveBin == "" {
		vserveBin = filepath.Join(work, "vserve")
		build := exec.CommandContext(ctx, "go", "build", "-tags", tags, "-o", vserveBin, "./cmd/vserve")
		build.Dir, build.Stdout, build.Stderr = repo, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building vserve: %w", err)
		}
	}
	addr, stopServer, err := startVserve(ctx, vserveBin, modelDir, conc[len(conc)-1])
	if err != nil {
		return err
	}
	defer stopServer()
	c.baseURL, c.tokenizerDir, c.name = "http://"+addr, modelDir, "vserve-"+shape
	t, _ := c.target(c.baseURL, c.name)
	client, err := c.client(t, conc[len(conc)-1])
	if err != nil {
		return err
	}
	if err := client.ResolveModel(ctx); err != nil {
		return err
	}
	pts, err := sweep(ctx, &c, client, conc)
	if err != nil {
		return err
	}
	fmt.Fprintf(&md, "\n## End to end: random %s model, CPU backend\n\n%d prompts per level, %d input and %d output tokens (ignore_eos), streaming %s.\n",
		shape, c.numPrompts, c.inLen, c.outLen, c.api)
	bench.WriteSweepMarkdown(&md, c.name, pts)
	if c.plotDir != "" {
		if err := os.MkdirAll(c.plotDir, 0o755); err != nil {
			return err
		}
		if err := bench.PlotThroughput(filepath.Join(c.plotDir, "throughput.png"), map[string][]bench.SweepPoint{c.name: pts}); err != nil {
			return err
		}
	}
	if err := os.WriteFile(out, md.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "report written to %s\n", out)
	return nil
}

func section(md *bytes.Buffer, title, body string, err error) {
	fmt.Fprintf(md, "\n## %s\n\n```\n%s\n```\n", title, strings.TrimSpace(body))
	if err != nil {
		fmt.Fprintf(md, "\nerror: %v\n", err)
	}
}

// startVserve runs vserve on a free loopback port and waits for /health.
func startVserve(ctx context.Context, bin, modelDir string, maxSeqs int) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.CommandContext(ctx, bin, "--model", modelDir, "--host", "127.0.0.1", "--port", fmt.Sprint(port),
		"--max-num-seqs", fmt.Sprint(max(maxSeqs, 16)), "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr, stop, nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("vserve did not become healthy within 5 minutes")
}
