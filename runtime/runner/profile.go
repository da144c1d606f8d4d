package runner

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vserve/vserve/internal/cputime"
	"github.com/vserve/vserve/runtime/kernel"
)

// OpStat is the accumulated time of one backend op: wall clock, and the
// process CPU time (which, on a machine shared with other work, excludes
// the time the process waited for a CPU; zero where not measurable).
type OpStat struct {
	Op      string
	Calls   int
	Time    time.Duration
	CPUTime time.Duration
}

// OpProfile accumulates per-op wall time of a profiled backend. Each op is
// followed by a Sync, so on an asynchronous device the profile serialises
// the work (use it to see where time goes, not for peak throughput).
type OpProfile struct {
	stats map[string]*OpStat
}

// Reset clears the accumulated times.
func (p *OpProfile) Reset() { p.stats = map[string]*OpStat{} }

// Stats returns the ops sorted by descending CPU time (wall time where
// CPU time is not measured).
func (p *OpProfile) Stats() []OpStat {
	out := make([]OpStat, 0, len(p.stats))
	for _, s := range p.stats {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CPUTime != out[j].CPUTime {
			return out[i].CPUTime > out[j].CPUTime
		}
		return out[i].Time > out[j].Time
	})
	return out
}

// String formats the profile as a table with each op's share of the total.
func (p *OpProfile) String() string {
	stats := p.Stats()
	var total, totalCPU time.Duration
	for _, s := range stats {
		total += s.Time
		totalCPU += s.CPUTime
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-16s %8s %12s %6s %12s %6s\n", "op", "calls", "wall", "wall%", "cpu", "cpu%")
	for _, s := range stats {
		fmt.Fprintf(&sb, "%-16s %8d %12v %5.1f%% %12v %5.1f%%\n", s.Op, s.Calls,
			s.Time.Round(time.Microsecond), 100*float64(s.Time)/float64(max(total, 1)),
			s.CPUTime.Round(time.Microsecond), 100*float64(s.CPUTime)/float64(max(totalCPU, 1)))
	}
	return sb.String()
}

func (p *OpProfile) time(op string, start time.Time, startCPU time.Duration) {
	s := p.stats[op]
	if s == nil {
		s = &OpStat{Op: op}
		p.stats[op] = s
	}
	s.Calls++
	s.Time += time.Since(start)
	if startCPU > 0 {
		s.CPUTime += cputime.Process() - startCPU
	}
}

// Profile wraps be so that every op's time (op + Sync) is added to the
// returned profile. CPU time covers the whole process (every thread), so
// with a multi-threaded backend it is the op's total CPU cost. The wrapper keeps be's HostMapper capability.
func Profile(be kernel.Backend) (kernel.Backend, *OpProfile) {
	p := &OpProfile{}
	p.Reset()
	pb := &profiled{Backend: be, p: p}
	if hm, ok := be.(kernel.HostMapper); ok {
		return &profiledMapper{profiled: pb, hm: hm}, p
	}
	return pb, p
}

type profiled struct {
	kernel.Backend
	p *OpProfile
}

type profiledMapper struct {
	*profiled
	hm kernel.HostMapper
}

func (m *profiledMapper) MapHost(dt kernel.DType, data []byte) (kernel.Buffer, error) {
	return m.hm.MapHost(dt, data)
}

func (b *profiled) timed(op string, f func() error) error {
	startCPU := cputime.Process()
	start := time.Now()
	err := f()
	if err == nil {
		err = b.Backend.Sync()
	}
	b.p.time(op, start, startCPU)
	return err
}

func (b *profiled) Embedding(out, table, ids kernel.Buffer, numTokens, dim int) error {
	return b.timed("Embedding", func() error { return b.Backend.Embedding(out, table, ids, numTokens, dim) })
}

func (b *profiled) MatMul(out, x, w kernel.Buffer, m, n, k int) error {
	return b.timed("MatMul", func() error { return b.Backend.MatMul(out, x, w, m, n, k) })
}

func (b *profiled) AddBias(x, bias kernel.Buffer, rows, dim int) error {
	return b.timed("AddBias", func() error { return b.Backend.AddBias(x, bias, rows, dim) })
}

func (b *profiled) RMSNorm(out, x, w kernel.Buffer, rows, dim int, eps float32) error {
	return b.timed("RMSNorm", func() error { return b.Backend.RMSNorm(out, x, w, rows, dim, eps) })
}

func (b *profiled) Add(out, x, y kernel.Buffer, n int) error {
	return b.timed("Add", func() error { return b.Backend.Add(out, x, y, n) })
}

func (b *profiled) SiLUMul(out, gate, up kernel.Buffer, rows, dim int) error {
	return b.timed("SiLUMul", func() error { return b.Backend.SiLUMul(out, gate, up, rows, dim) })
}

func (b *profiled) RoPE(q, k, positions, invFreq kernel.Buffer, numTokens, numHeads, numKVHeads, headDim int) error {
	return b.timed("RoPE", func() error {
		return b.Backend.RoPE(q, k, positions, invFreq, numTokens, numHeads, numKVHeads, headDim)
	})
}

func (b *profiled) ReshapeAndCache(key, value, kCache, vCache, slots kernel.Buffer, numTokens, numKVHeads, headDim, blockSize int) error {
	return b.timed("ReshapeAndCache", func() error {
		return b.Backend.ReshapeAndCache(key, value, kCache, vCache, slots, numTokens, numKVHeads, headDim, blockSize)
	})
}

func (b *profiled) PagedAttention(out, q, kCache, vCache kernel.Buffer, m *kernel.AttentionMeta) error {
	return b.timed("PagedAttention", func() error { return b.Backend.PagedAttention(out, q, kCache, vCache, m) })
}

func (b *profiled) GatherRows(out, x, rows kernel.Buffer, numRows, dim int) error {
	return b.timed("GatherRows", func() error { return b.Backend.GatherRows(out, x, rows, numRows, dim) })
}

func (b *profiled) Sample(logits kernel.Buffer, vocab int, sb *kernel.SampleBatch, res *kernel.SampleResult) error {
	return b.timed("Sample", func() error { return b.Backend.Sample(logits, vocab, sb, res) })
}

func (b *profiled) Upload(dst kernel.Buffer, src any) error {
	return b.timed("Upload", func() error { return b.Backend.Upload(dst, src) })
}
