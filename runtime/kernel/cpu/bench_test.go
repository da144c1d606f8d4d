package cpu

import (
	"fmt"
	"testing"

	"github.com/vserve/vserve/internal/cputime"
	"github.com/vserve/vserve/runtime/kernel/kerneltest"
)

// benchLimit keeps the CPU benchmarks within this machine's memory.
var benchLimit = kerneltest.BenchOptions{MaxBytes: 600 << 20, CPUTime: cputime.Process}

func BenchmarkMatMul(b *testing.B) {
	kerneltest.BenchmarkMatMul(b, open(b, 0), benchLimit)
}

func BenchmarkPagedAttention(b *testing.B) {
	kerneltest.BenchmarkPagedAttention(b, open(b, 0), benchLimit)
}

func BenchmarkSample(b *testing.B) {
	kerneltest.BenchmarkSample(b, open(b, 0), benchLimit)
}

// BenchmarkReadBandwidth streams a 256 MiB array (8× the L3 of the
// machines at hand) through the dot kernel (x·x reads each byte once) on 1
// and on all threads: the memory read bandwidth that bounds decode.
func BenchmarkReadBandwidth(b *testing.B) {
	const n = 64 << 20 // float32s
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(i & 7)
	}
	be := open(b, 0)
	for _, threads := range []int{1, be.Threads()} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			sums := make([]float32, threads)
			b.SetBytes(4 * n)
			cpu0 := cputime.Process()
			for b.Loop() {
				be.pool.run(threads, func(part, parts int) {
					lo, hi := split(n, part, parts, 1024)
					sums[part] = dot(data[lo:hi], data[lo:hi])
				})
			}
			b.ReportMetric(4*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			if cpu := cputime.Process() - cpu0; cpu > 0 {
				b.ReportMetric(4*n*float64(b.N)/cpu.Seconds()/1e9, "GB/cpu-s")
			}
		})
	}
}
