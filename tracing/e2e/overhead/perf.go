package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// The tool's paired CPU differences vary by ±100 µs per request from round
// to round on a shared machine, ten times what tracing costs. With
// --perf-freq the tool records the servers with Linux perf during the
// rounds instead and attributes each server's samples: tracing's share of
// them, times the server's CPU per request, is tracing's CPU per request,
// to a few per cent of itself once a server has a few hundred samples in
// tracing's code (docs/tracing-overhead.md).

// tracingFrame matches the functions of a call stack that make a sample
// tracing's: the journey and step hooks and what they call, the export
// processor, the encoders, and the OTLP client, gRPC and propagation
// packages (a server uses gRPC only to export spans). The metrics, fed by
// the same hooks, are not tracing's (metricsFrame).
var tracingFrame = regexp.MustCompile(`vserve/tracing\.\((\*stepTracer|\*stepVisitor|\*coreTracer|\*coreState|\*apiSpan|\*exportProcessor|\*eventSink|\*spanBatch|\*pendingStep|\*journeyEvent|\*eventAttrs|\*directSpans?|\*spanStarter|\*spanCodec|\*slicedWriter|\*lentBuffers)\)|` +
	`vserve/tracing\.(httpTelemetry|traceHeaders|appendSpan|appendEvent|random(Span|Trace)ID)|` +
	`otel/sdk/trace|google\.golang\.org/grpc|otlptrace|otel/propagation`)

// metricsFrame matches the functions of the metrics.
var metricsFrame = regexp.MustCompile(`vserve/tracing\.\(\*metrics\)|otel/sdk/metric`)

// profileShares are one process's perf samples.
type profileShares struct {
	samples, tracing, metrics int
}

// perfRecorder is a running `perf record` of the servers.
type perfRecorder struct {
	cmd     *exec.Cmd
	dir     string
	data    string
	log     string
	stopped bool
}

// startPerf records the call stacks of the processes pids at freq Hz.
func startPerf(freq int, pids []int) (*perfRecorder, error) {
	if _, err := exec.LookPath("perf"); err != nil {
		return nil, fmt.Errorf("--perf-freq: %w", err)
	}
	dir, err := os.MkdirTemp("", "overhead-perf-*")
	if err != nil {
		return nil, err
	}
	p := &perfRecorder{dir: dir, data: filepath.Join(dir, "perf.data"), log: filepath.Join(dir, "perf.log")}
	list := make([]string, len(pids))
	for i, pid := range pids {
		list[i] = strconv.Itoa(pid)
	}
	logf, err := os.Create(p.log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	p.cmd = exec.Command("perf", "record", "-F", strconv.Itoa(freq), "-g", "-o", p.data, "-p", strings.Join(list, ","))
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("perf record: %w", err)
	}
	return p, nil
}

// abort ends a recording that stop did not (the rounds failed).
func (p *perfRecorder) abort() {
	if !p.stopped {
		p.stopped = true
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		os.RemoveAll(p.dir)
	}
}

// stop ends the recording and returns each process's shares.
func (p *perfRecorder) stop() (map[int]profileShares, error) {
	p.stopped = true
	defer os.RemoveAll(p.dir)
	_ = p.cmd.Process.Signal(syscall.SIGINT) // perf writes its data and exits
	waitErr := p.cmd.Wait()
	if st, err := os.Stat(p.data); err != nil || st.Size() == 0 {
		b, _ := os.ReadFile(p.log)
		return nil, fmt.Errorf("perf record wrote no data (%v): %s", errors.Join(waitErr, err), b)
	}
	script := exec.Command("perf", "script", "-F", "pid,ip,sym", "-i", p.data)
	out, err := script.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := script.Start(); err != nil {
		return nil, fmt.Errorf("perf script: %w", err)
	}
	shares, parseErr := parsePerfScript(out)
	if err := script.Wait(); err != nil {
		return nil, fmt.Errorf("perf script: %w", err)
	}
	return shares, parseErr
}

// parsePerfScript reads `perf script -F pid,ip,sym` output: one sample per
// paragraph, its first line the process id and then one line per frame
// (address and function), innermost first, and counts each process's
// samples and those in tracing's and in the metrics' code: the innermost
// frame that is either's decides, since tracing's hooks also feed metrics
// that every request records, traced or not (the request metrics that
// apiSpan.End records are the metrics', as metricsOnlySpan.End's are).
func parsePerfScript(r io.Reader) (map[int]profileShares, error) {
	shares := map[int]profileShares{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	pid, inSample := 0, false
	var isTracing, isMetrics bool
	flush := func() {
		if inSample {
			s := shares[pid]
			s.samples++
			if isTracing {
				s.tracing++
			} else if isMetrics {
				s.metrics++
			}
			shares[pid] = s
		}
		inSample, isTracing, isMetrics = false, false, false
	}
	classified := func() bool { return isTracing || isMetrics }
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case !inSample:
			n, err := strconv.Atoi(strings.Fields(line)[0])
			if err != nil {
				return nil, fmt.Errorf("perf script: sample header %q: %w", line, err)
			}
			pid, inSample = n, true
		case !classified():
			isMetrics = metricsFrame.MatchString(line)
			isTracing = !isMetrics && tracingFrame.MatchString(line)
		}
	}
	flush()
	return shares, sc.Err()
}
