// Command checktraces reads vserve's traces back from Jaeger's query API
// (/api/traces) and checks them against spec/observability.md: the
// llm_request -> llm_core tree with every api.* and journey.* event and key,
// and the scheduler_steps_<k> windows with their summaries, snapshots and
// device timing. It polls until the expected number of request traces is
// there or the timeout passes, and exits non-zero listing every violation.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	query := flag.String("query", "http://127.0.0.1:16686", "Jaeger query base URL")
	service := flag.String("service", "vserve", "service name")
	want := flag.Int("requests", 1, "llm_request spans expected")
	cores := flag.Int("cores", 0, "llm_core spans expected at least (default: -requests)")
	interval := flag.Int("interval", 10, "step closure interval of the run")
	steps := flag.Bool("steps", true, "expect step windows")
	summaries := flag.Int("summaries", 0, "step summaries expected at least (the steps the server executed, at step rate 1.0)")
	timeout := flag.Duration("timeout", 60*time.Second, "how long to wait for the traces")
	flag.Parse()

	if *cores == 0 {
		*cores = *want
	}
	exp := expectations{requests: *want, cores: *cores, interval: *interval, steps: *steps, summaries: *summaries}
	deadline := time.Now().Add(*timeout)
	var errs []error
	for {
		traces, err := fetch(*query, *service)
		if err != nil {
			errs = []error{err}
		} else {
			var sum summary
			sum, errs = check(traces, exp)
			if len(errs) == 0 {
				fmt.Printf("ok: %d request traces, %d core spans, %d step windows, %d step summaries, %d snapshots\n",
					sum.requests, sum.cores, sum.windows, sum.summaries, sum.snapshots)
				return
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, e := range errs {
		fmt.Fprintln(os.Stderr, "FAIL:", e)
	}
	os.Exit(1)
}

// fetch reads every trace of service from the last hour.
func fetch(base, service string) ([]jaegerTrace, error) {
	u := fmt.Sprintf("%s/api/traces?service=%s&limit=10000&lookback=1h", base, url.QueryEscape(service))
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", u, err)
	}
	return body.Data, nil
}
