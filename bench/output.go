package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteTable prints summaries side by side, one column per summary, and,
// with exactly two summaries, the ratio of the second to the first.
func WriteTable(w io.Writer, sums ...Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := []string{"metric"}
	for _, s := range sums {
		header = append(header, s.Target)
	}
	ratio := len(sums) == 2
	if ratio {
		header = append(header, sums[1].Target+"/"+sums[0].Target)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	row := func(name string, get func(Summary) float64, format string) {
		cells := []string{name}
		for _, s := range sums {
			cells = append(cells, fmt.Sprintf(format, get(s)))
		}
		if ratio {
			a, b := get(sums[0]), get(sums[1])
			if a != 0 {
				cells = append(cells, fmt.Sprintf("%.2fx", b/a))
			} else {
				cells = append(cells, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	// vllm bench serve's rows, in its order (and input throughput).
	row("successful requests", func(s Summary) float64 { return float64(s.Completed) }, "%.0f")
	row("failed requests", func(s Summary) float64 { return float64(s.Failed) }, "%.0f")
	row("duration (s)", func(s Summary) float64 { return s.DurationS }, "%.2f")
	row("total input tokens", func(s Summary) float64 { return float64(s.InputTokens) }, "%.0f")
	row("total output tokens", func(s Summary) float64 { return float64(s.OutputTokens) }, "%.0f")
	row("request throughput (req/s)", func(s Summary) float64 { return s.RequestRate }, "%.2f")
	// Goodput is shown whenever an SLO is set, 0 included.
	if slices.ContainsFunc(sums, func(s Summary) bool { return s.Goodput != nil }) {
		row("request goodput (req/s)", func(s Summary) float64 {
			if s.Goodput == nil {
				return 0
			}
			return *s.Goodput
		}, "%.2f")
	}
	row("input throughput (tok/s)", func(s Summary) float64 { return s.InputTokensPS }, "%.1f")
	row("output throughput (tok/s)", func(s Summary) float64 { return s.OutputTokensPS }, "%.1f")
	row("total token throughput (tok/s)", func(s Summary) float64 { return s.TotalTokensPS }, "%.1f")
	for _, d := range []struct {
		name string
		get  func(Summary) Dist
	}{{"TTFT", func(s Summary) Dist { return s.TTFT }}, {"TPOT", func(s Summary) Dist { return s.TPOT }},
		{"ITL", func(s Summary) Dist { return s.ITL }}, {"E2E", func(s Summary) Dist { return s.E2E }}} {
		get := d.get
		row(d.name+" mean (ms)", func(s Summary) float64 { return get(s).Mean }, "%.2f")
		row(d.name+" median (ms)", func(s Summary) float64 { return get(s).Median }, "%.2f")
		row(d.name+" std (ms)", func(s Summary) float64 { return get(s).Std }, "%.2f")
		row(d.name+" p90 (ms)", func(s Summary) float64 { return get(s).P90 }, "%.2f")
		row(d.name+" p99 (ms)", func(s Summary) float64 { return get(s).P99 }, "%.2f")
	}
	if sums[0].ServerMetricsOK {
		row("server prefix cache hit rate", func(s Summary) float64 { return s.PrefixHitRate }, "%.3f")
		row("server preemptions", func(s Summary) float64 { return s.Preemptions }, "%.0f")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range sums {
		if len(s.ErrorsByKind) > 0 {
			kinds := make([]string, 0, len(s.ErrorsByKind))
			for k, n := range s.ErrorsByKind {
				kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
			}
			sort.Strings(kinds)
			fmt.Fprintf(w, "errors (%s): %s\n", s.Target, strings.Join(kinds, " "))
		}
	}
	return nil
}

// WriteJSON writes v as indented JSON to path ("-": standard output).
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
