package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/vserve/vserve/internal/cputime"
)

// decodeBench holds n running requests in steady decode.
type decodeBench struct {
	s    *Scheduler
	n    int
	ro   RunnerOutput
	gen  int
	left int // decode steps before the requests must be replaced
}

const (
	benchPrompt    = 100
	benchMaxTokens = 1500
)

func newDecodeBench(b testing.TB, n int) *decodeBench {
	perReq := ceilDiv(benchPrompt+benchMaxTokens, 16)
	s, err := New(Config{
		MaxModelLen:         benchPrompt + benchMaxTokens,
		MaxNumBatchedTokens: max(8192, n),
		MaxNumSeqs:          n,
		BlockSize:           16,
		NumBlocks:           1 + n*perReq,
		EnablePrefixCaching: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	d := &decodeBench{s: s, n: n}
	d.refill(b)
	return d
}

// refill ends every request, adds n fresh ones and runs their prefill, so
// that the timed loop sees decode steps only.
func (d *decodeBench) refill(b testing.TB) {
	for _, r := range append([]*request(nil), d.s.running...) {
		d.s.Abort(r.id, FinishAbort)
	}
	d.gen++
	for i := 0; i < d.n; i++ {
		prompt := make([]int32, benchPrompt)
		for j := range prompt {
			prompt[j] = int32(3 + (i*benchPrompt+j)%30000)
		}
		p := DefaultSamplingParams(benchMaxTokens)
		if err := d.s.AddRequest(&Request{ID: fmt.Sprintf("g%d-r%d", d.gen, i), PromptTokenIDs: prompt, Params: p, EOSTokenIDs: []int32{2}}); err != nil {
			b.Fatal(err)
		}
	}
	for d.s.NumWaiting() > 0 || d.decodeReady() < d.n {
		out := d.s.Schedule()
		ro := &RunnerOutput{Step: out.Step}
		for id := range out.NumScheduledTokens {
			if r := d.s.requests[id]; r.numComputed == len(r.tokens) { // computed advanced by n
				ro.ReqIDs = append(ro.ReqIDs, id)
				ro.SampledTokenIDs = append(ro.SampledTokenIDs, []int32{7})
			}
		}
		d.s.Update(out, ro)
	}
	// One decode step to learn the schedule order, reused by every step.
	out := d.s.Schedule()
	d.ro.ReqIDs = d.ro.ReqIDs[:0]
	d.ro.SampledTokenIDs = d.ro.SampledTokenIDs[:0]
	tok := []int32{7}
	for _, cr := range out.CachedRequests {
		d.ro.ReqIDs = append(d.ro.ReqIDs, cr.ID)
		d.ro.SampledTokenIDs = append(d.ro.SampledTokenIDs, tok)
	}
	if len(d.ro.ReqIDs) != d.n {
		b.Fatalf("%d requests decoding, want %d", len(d.ro.ReqIDs), d.n)
	}
	d.ro.Step = out.Step
	d.s.Update(out, &d.ro)
	d.left = benchMaxTokens
	for _, r := range d.s.running {
		d.left = min(d.left, r.params.MaxTokens-r.numOutputs()-1)
	}
}

func (d *decodeBench) decodeReady() int {
	k := 0
	for _, r := range d.s.running {
		if r.numOutputs() > 0 {
			k++
		}
	}
	return k
}

// BenchmarkScheduleUpdate measures one steady decode step (Schedule plus
// Update of a runner output with one token per request) with n running
// requests, prefix caching on (SHA-256), no observer.
func BenchmarkScheduleUpdate(b *testing.B) {
	for _, n := range []int{64, 256, 1024} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			d := newDecodeBench(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPUClock()
			for i := 0; i < b.N; i++ {
				if d.left == 0 {
					b.StopTimer()
					cpu.pause()
					d.refill(b)
					cpu.resume()
					b.StartTimer()
				}
				out := d.s.Schedule()
				d.ro.Step = out.Step
				_, st := d.s.Update(out, &d.ro)
				d.left--
				if st.NumRunning != n {
					b.Fatalf("step %d: running %d, stats %+v, left %d", i, st.NumRunning, st, d.left)
				}
			}
			cpu.report(b)
		})
	}
}

// cpuClock measures the process's CPU time (user + system) over the timed
// part of a benchmark. On a shared, overloaded machine wall time per op
// mostly measures waiting for a core; CPU time per op does not.
type cpuClock struct {
	total, start time.Duration
}

func startCPUClock() *cpuClock { return &cpuClock{start: cputime.Process()} }
func (c *cpuClock) pause()     { c.total += cputime.Process() - c.start }
func (c *cpuClock) resume()    { c.start = cputime.Process() }

func (c *cpuClock) report(b *testing.B) {
	c.pause()
	b.ReportMetric(float64(c.total.Nanoseconds())/float64(b.N), "cpu-ns/op")
}
