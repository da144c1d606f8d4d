package tracing

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	runtimemetrics "runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/internal/cputime"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
	"github.com/vserve/vserve/tracing/internal/otlpsink"
)

// benchRequestTokens is the output length of one benchmark request.
const benchRequestTokens = 16

// BenchmarkRequestOverhead measures the CPU that observability costs per
// request: requests through every hook (API span, engine start/end, one
// prefill and 15 decode steps with their step hooks), in lockstep batches of
// 1 (the worst case for step tracing, whose per-step cost a real batch
// shares among its requests) and 32. Spans are exported with the real OTLP
// gRPC client (the default protocol; http/protobuf in one case) to a
// loopback sink in a child process (a collector's CPU is not vserve's) that
// discards them without decoding. cpu-us/req is this process's CPU time
// (rusage, all goroutines: hooks, export processor, protobuf encoding,
// transport) divided by the requests; gc-cpu-us/req is the part of it the
// runtime attributes to garbage collection, which depends on the heap: this
// process's is small, a server's holds its KV cache and collects far less
// often per byte allocated. idle-gc-cpu-us/req is the GC work done on an
// otherwise idle processor, and cpu-less-idle-gc-us/req the CPU without it
// (see idleGCCPUTime).
func BenchmarkRequestOverhead(b *testing.B) {
	sink := startSinkProcess(b, ProtocolGRPC)
	httpSink := startSinkProcess(b, ProtocolHTTPProtobuf)
	cases := []struct {
		name string
		cfg  func(*Config)
	}{
		{"off", func(*Config) {}},
		{"metrics+endpoint-only", func(c *Config) { c.OTLPTracesEndpoint = sink }},
		{"journey=1", func(c *Config) {
			c.OTLPTracesEndpoint, c.EnableJourneyTracing = sink, true
		}},
		{"journey=1,steps=1,rich=0.1", func(c *Config) {
			c.OTLPTracesEndpoint, c.EnableJourneyTracing = sink, true
			c.StepTracingEnabled, c.StepSampleRate, c.StepRichSubsampleRate = true, 1, 0.1
		}},
		// The same over http/protobuf.
		{"journey=1,steps=1,rich=0.1,http", func(c *Config) {
			c.OTLPTracesEndpoint, c.Protocol, c.EnableJourneyTracing = httpSink, ProtocolHTTPProtobuf, true
			c.StepTracingEnabled, c.StepSampleRate, c.StepRichSubsampleRate = true, 1, 0.1
		}},
		// The same through the stock exporter's own span transform.
		{"journey=1,steps=1,rich=0.1,stock-transform", func(c *Config) {
			c.OTLPTracesEndpoint, c.EnableJourneyTracing, c.stockTransform = sink, true, true
			c.StepTracingEnabled, c.StepSampleRate, c.StepRichSubsampleRate = true, 1, 0.1
		}},
		// The same spans, with their events added through the SDK (as
		// whenever the export processor is not the only processor), ended
		// into a processor that drops them: recording without exporting.
		{"journey=1,steps=1,rich=0.1,no-export", func(c *Config) {
			c.SpanProcessors = []sdktrace.SpanProcessor{discardProcessor{}}
			c.EnableJourneyTracing = true
			c.StepTracingEnabled, c.StepSampleRate, c.StepRichSubsampleRate = true, 1, 0.1
		}},
	}
	for _, batch := range []int{1, 32} {
		for _, tc := range cases {
			benchOverhead(b, fmt.Sprintf("batch=%d/%s", batch, tc.name), batch, tc.cfg)
		}
	}
}

// benchOverhead runs one configuration; one op is one request.
func benchOverhead(b *testing.B, name string, batch int, mutate func(*Config)) {
	b.Run(name, func(b *testing.B) {
		c := DefaultConfig()
		c.Protocol = ProtocolGRPC // the default
		c.MaxExportQueue = 1 << 16
		mutate(&c)
		tel, err := Setup(context.Background(), c)
		if err != nil {
			b.Fatal(err)
		}
		sim := newBenchSim(tel, batch)
		start, startGC, startIdle := cputime.Process(), gcCPUTime(), idleGCCPUTime()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += batch {
			sim.run()
		}
		b.StopTimer()
		if tel.tp != nil {
			_ = tel.tp.ForceFlush(context.Background())
		}
		runtime.GC() // end the cycle in progress so that its GC time is counted
		cpu, idle := cputime.Process()-start, idleGCCPUTime()-startIdle
		perReq := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
		b.ReportMetric(perReq(cpu), "cpu-us/req")
		b.ReportMetric(perReq(gcCPUTime()-startGC), "gc-cpu-us/req")
		b.ReportMetric(perReq(idle), "idle-gc-cpu-us/req")
		b.ReportMetric(perReq(cpu-idle), "cpu-less-idle-gc-us/req")
		_ = tel.Shutdown(context.Background())
	})
}

// sinkProcessEnv names the OTLP protocol of the sink a child process runs
// for startSinkProcess.
const sinkProcessEnv = "VSERVE_TEST_OTLPSINK_PROCESS"

// startSinkProcess runs an otlpsink in a child process (this test binary,
// running TestHelperOTLPSinkProcess) and returns its endpoint; the child
// ends when the benchmark does.
func startSinkProcess(b *testing.B, protocol string) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOTLPSinkProcess$")
	cmd.Env = append(os.Environ(), sinkProcessEnv+"="+protocol)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close() // the child exits when its stdin closes
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("OTLP sink process: %v", err)
	}
	return strings.TrimSpace(line)
}

// TestHelperOTLPSinkProcess is the child process of startSinkProcess: it
// prints the sink's endpoint and serves until stdin closes.
func TestHelperOTLPSinkProcess(t *testing.T) {
	protocol := os.Getenv(sinkProcessEnv)
	if protocol == "" {
		t.Skip("the OTLP sink process of BenchmarkRequestOverhead")
	}
	sink, err := otlpsink.Start(protocol)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(sink.Endpoint)
	_, _ = io.Copy(io.Discard, os.Stdin)
	sink.Close()
	os.Exit(0)
}

// discardProcessor receives ended spans and drops them.
type discardProcessor struct{}

func (discardProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discardProcessor) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discardProcessor) Shutdown(context.Context) error                  { return nil }
func (discardProcessor) ForceFlush(context.Context) error                { return nil }

// gcCPUTime is the runtime's estimate of the CPU spent on garbage
// collection so far (an overestimate that includes idle mark workers; see
// runtime/metrics).
func gcCPUTime() time.Duration { return runtimeSeconds("/cpu/classes/gc/total:cpu-seconds") }

// idleGCCPUTime is the part of gcCPUTime that mark workers spent on
// otherwise idle processors. runtime/metrics says to subtract it from the
// GC total to obtain the compulsory GC CPU: a loaded server has no idle
// processors to lend, while this benchmark, one busy goroutine on two
// processors, lends one most of the time.
func idleGCCPUTime() time.Duration { return runtimeSeconds("/cpu/classes/gc/mark/idle:cpu-seconds") }

func runtimeSeconds(name string) time.Duration {
	s := []runtimemetrics.Sample{{Name: name}}
	runtimemetrics.Read(s)
	return time.Duration(s[0].Value.Float64() * float64(time.Second))
}

type benchSim struct {
	tel   *Telemetry
	obs   scheduler.Observer
	http  server.Telemetry
	batch int
	step  uint64
	req   *http.Request
	seq   int
	cold  *coldHooks // nil: hooks run back to back
}

// coldHooks makes every hook of the simulation find the caches as a
// server's hooks do, evicted by the serving code that ran since the last
// one: before each hook it writes through a buffer larger than this
// core's L2 cache. It times the hooks alone (the eviction is not
// counted): inHooks is their wall time, on this goroutine.
type coldHooks struct {
	buf     []byte
	t0      time.Time
	inHooks time.Duration
}

func newColdHooks(evict int) *coldHooks { return &coldHooks{buf: make([]byte, evict)} }

// pre evicts the caches and starts timing a hook.
func (s *benchSim) pre() {
	if c := s.cold; c != nil {
		for i := 0; i < len(c.buf); i += 64 {
			c.buf[i]++
		}
		c.t0 = time.Now()
	}
}

// post ends timing a hook.
func (s *benchSim) post() {
	if c := s.cold; c != nil {
		c.inHooks += time.Since(c.t0)
	}
}

func newBenchSim(tel *Telemetry, batch int) *benchSim {
	return &benchSim{tel: tel, obs: tel.SchedulerObserver(), http: tel.HTTP(), batch: batch,
		req: httptest.NewRequest("POST", "/v1/completions", nil)}
}

// benchReq is one in-flight request of the simulation.
type benchReq struct {
	r       *fakeReq
	api     server.RequestSpan
	headers map[string]string
	times   engine.RequestTimes
}

// run serves batch requests in lockstep: they arrive together, share one
// prefill step and benchRequestTokens-1 decode steps, and finish together.
func (s *benchSim) run() {
	reqs := make([]*benchReq, s.batch)
	view := &fakeStep{scheduled: make(map[string]int, s.batch), start: time.Now()}
	for i := range reqs {
		s.seq++
		id := "bench-" + strconv.Itoa(s.seq)
		q := &benchReq{r: &fakeReq{id: id, prompt: 32, maxTokens: benchRequestTokens, phase: scheduler.PhaseWaiting}}
		s.pre()
		q.api = s.http.Arrived(s.req, "/v1/completions")
		s.post()
		maxTokens := benchRequestTokens
		s.pre()
		q.api.Parsed(server.RequestInfo{RequestID: "cmpl-" + id, Model: "m", PromptTokens: 32, MaxTokens: &maxTokens, N: ptr(1)})
		s.post()
		s.pre()
		q.headers = q.api.TraceHeaders()
		s.post()
		q.times.Arrival = time.Now()
		s.pre()
		q.r.state = s.tel.OnRequestStart(engine.RequestStart{ID: id, TraceHeaders: q.headers, NumPromptTokens: 32,
			MaxTokens: maxTokens, Arrival: q.times.Arrival})
		s.post()
		s.pre()
		s.obs.Queued(q.r, s.step)
		s.post()
		s.pre()
		q.api.HandoffToCore(time.Time{})
		s.post()
		reqs[i] = q
		view.running = append(view.running, q.r)
	}
	out := &scheduler.Output{NumScheduledTokens: view.scheduled}
	rec := &engine.StepRecord{Outputs: make([]scheduler.RequestOutput, s.batch)}
	token := []int32{7}
	for produced := 0; produced < benchRequestTokens; produced++ {
		s.step++
		view.start = time.Now()
		total := 0
		for _, q := range reqs {
			n := 1
			if produced == 0 {
				n = q.r.prompt
				q.r.phase = scheduler.PhasePrefill
				q.times.Scheduled = view.start
				s.pre()
				s.obs.Scheduled(q.r, s.step, false)
				s.post()
			}
			view.scheduled[q.r.id] = n
			total += n
		}
		out.Step, out.TotalNumScheduledTokens = s.step, total
		s.pre()
		s.obs.StepBuilt(out, view)
		s.post()
		now := time.Now()
		for i, q := range reqs {
			q.r.computed += view.scheduled[q.r.id]
			q.r.highWater = min(q.r.computed, q.r.prompt)
			q.r.output++
			q.r.phase = scheduler.PhaseDecode
			if q.r.output == 1 {
				q.times.FirstToken = now
				s.pre()
				s.obs.FirstToken(q.r, s.step)
				s.post()
				s.pre()
				q.api.FirstResponseFromCore(now)
				s.post()
			}
			q.times.LastToken = now
			rec.Outputs[i] = scheduler.RequestOutput{ID: q.r.id, Step: s.step, NewTokenIDs: token}
			if q.r.output == benchRequestTokens {
				s.pre()
				s.obs.Finished(q.r, s.step, scheduler.FinishLength)
				s.post()
			}
		}
		rec.Step, rec.Start, rec.End, rec.NumScheduledTokens = s.step, view.start, time.Now(), total
		s.pre()
		s.tel.OnStep(rec)
		s.post()
	}
	for _, q := range reqs {
		q.times.Finished = time.Now()
		s.pre()
		s.tel.OnRequestEnd(engine.RequestEnd{ID: q.r.id, TraceHeaders: q.headers, Reason: scheduler.FinishLength,
			NumPromptTokens: 32, NumOutputTokens: q.r.output, MaxTokens: benchRequestTokens, Times: q.times,
			ObserverState: q.r.state})
		s.post()
		s.pre()
		q.api.Departed(server.Outcome{CompletionTokens: q.r.output, Times: q.times})
		s.post()
		s.pre()
		q.api.End()
		s.post()
		delete(view.scheduled, q.r.id)
	}
}

// BenchmarkColdHooks measures the hooks' own time per request with the
// caches evicted before each hook (coldHooks): in a server the serving code
// between two hooks evicts tracing's code and data, and the hooks take
// several times their warm time (docs/tracing-overhead.md). hook-ns/req is
// the hooks' wall time on the benchmark's goroutine (not the export
// goroutine's upload); compare configurations, and code, side by side.
func BenchmarkColdHooks(b *testing.B) {
	sink := startSinkProcess(b, ProtocolGRPC)
	cases := []struct {
		name string
		cfg  func(*Config)
	}{
		{"off", func(*Config) {}},
		{"journey=1", func(c *Config) {
			c.OTLPTracesEndpoint, c.EnableJourneyTracing = sink, true
		}},
		{"journey=1,steps=1,rich=0.1", func(c *Config) {
			c.OTLPTracesEndpoint, c.EnableJourneyTracing = sink, true
			c.StepTracingEnabled, c.StepSampleRate, c.StepRichSubsampleRate = true, 1, 0.1
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			c := DefaultConfig()
			c.Protocol = ProtocolGRPC
			c.MaxExportQueue = 1 << 16
			tc.cfg(&c)
			tel, err := Setup(context.Background(), c)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = tel.Shutdown(context.Background()) }()
			const batch = 16
			sim := newBenchSim(tel, batch)
			sim.cold = newColdHooks(coldEvictBytes)
			sim.run() // warm-up: first-use allocations
			sim.cold.inHooks = 0
			b.ResetTimer()
			n := 0
			for ; n < b.N; n += batch {
				sim.run()
			}
			b.ReportMetric(float64(sim.cold.inHooks.Nanoseconds())/float64(n), "hook-ns/req")
		})
	}
}

// coldEvictBytes is what coldHooks writes through before each hook: twice
// this machine class's L2 cache per core.
const coldEvictBytes = 2 << 20
