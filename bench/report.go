package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Machine describes the machine a report was measured on.
func Machine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "- CPU: %s, %d logical cores (GOMAXPROCS %d)\n", cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(&b, "- Memory: %s\n", memTotal())
	fmt.Fprintf(&b, "- Go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "- Date: %s\n", time.Now().UTC().Format(time.RFC3339))
	return b.String()
}

func cpuModel() string {
	return procField("/proc/cpuinfo", "model name")
}

func memTotal() string {
	return procField("/proc/meminfo", "MemTotal")
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// GoBench runs `go test [-tags tags] -run ^$ -bench pattern -benchtime t
// pkgs...` in dir and returns the benchmark result lines.
func GoBench(ctx context.Context, dir, tags, pattern, benchtime string, pkgs ...string) (string, error) {
	args := []string{"test"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(append(args, "-run", "^$", "-bench", pattern, "-benchmem", "-benchtime", benchtime), pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	var lines []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "pkg:") || strings.HasPrefix(l, "FAIL") {
			lines = append(lines, l)
		}
	}
	if err != nil {
		return strings.Join(lines, "\n"), fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, tail(out.String(), 2000))
	}
	return strings.Join(lines, "\n"), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// WriteSweepMarkdown writes a sweep as a markdown table.
func WriteSweepMarkdown(w io.Writer, name string, pts []SweepPoint) {
	fmt.Fprintf(w, "\n### %s\n\n", name)
	fmt.Fprintln(w, "| concurrency | req/s | output tok/s | TTFT p50 (ms) | TTFT p99 (ms) | TPOT p50 (ms) | TPOT p99 (ms) | ITL p50 (ms) | E2E p50 (ms) | failed |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range pts {
		s := p.Summary
		fmt.Fprintf(w, "| %d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %d |\n",
			p.Concurrency, s.RequestRate, s.OutputTokensPS, s.TTFT.Median, s.TTFT.P99, s.TPOT.Median, s.TPOT.P99, s.ITL.Median, s.E2E.Median, s.Failed)
	}
}
