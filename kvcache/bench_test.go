package kvcache

import (
	"testing"

	"github.com/vserve/vserve/internal/cputime"
)

// timedLoop runs body b.N times (via b.Loop), reports cpu-ns/op and
// returns it.
func timedLoop(b *testing.B, body func()) float64 {
	b.ReportAllocs()
	start := cputime.Process()
	n := 0
	for b.Loop() {
		body()
		n++
	}
	perOp := float64((cputime.Process() - start).Nanoseconds()) / float64(n)
	b.ReportMetric(perOp, "cpu-ns/op")
	return perOp
}

// BenchmarkAllocateFree measures taking one block from the free list and
// returning it (one op = Allocate of one block + Free).
func BenchmarkAllocateFree(b *testing.B) {
	m := newTestManager(b, 16, 1024, true)
	s := NewSeq("", 4)
	timedLoop(b, func() {
		if !m.Allocate(s, 0, 16, 0) {
			b.Fatal("allocate failed")
		}
		m.Free(s)
	})
}

// BenchmarkBlockHash measures the chain hash of one full 16-token block.
func BenchmarkBlockHash(b *testing.B) {
	for _, algo := range []HashAlgo{SHA256, Fast} {
		b.Run(algo.String(), func(b *testing.B) {
			h, err := newHasher(algo, "model")
			if err != nil {
				b.Fatal(err)
			}
			tokens := seqTokens(16, 1000)
			parent := h.root
			timedLoop(b, func() {
				parent = h.block(&parent, tokens, "", false)
			})
		})
	}
}

// BenchmarkPrefixLookup measures Lookup of a 100-block prompt that hits all
// of its blocks in a cache holding 10,000 blocks. "hashed": the request's
// block hashes are already known (a retry); "cold": they are computed too
// (first lookup of a new request, SHA-256).
func BenchmarkPrefixLookup(b *testing.B) {
	const bs, perSeq, numSeqs = 16, 100, 100
	m := newTestManager(b, bs, perSeq*numSeqs+1, true)
	var prompts [][]int32
	for i := 0; i < numSeqs; i++ {
		tokens := seqTokens(perSeq*bs, int32(i*100000))
		s := NewSeq("", perSeq)
		admit(b, m, s, tokens)
		m.Free(s)
		prompts = append(prompts, append(tokens, 7))
	}
	if m.NumCachedFree() != perSeq*numSeqs {
		b.Fatalf("cached %d blocks, want %d", m.NumCachedFree(), perSeq*numSeqs)
	}
	b.Run("hashed", func(b *testing.B) {
		s := NewSeq("", perSeq)
		prompt := prompts[numSeqs/2]
		perOp := timedLoop(b, func() {
			if m.Lookup(s, prompt) != perSeq*bs {
				b.Fatal("miss")
			}
		})
		b.ReportMetric(perOp/perSeq, "cpu-ns/block")
	})
	b.Run("cold", func(b *testing.B) {
		seqs := make([]Seq, 64)
		for i := range seqs {
			seqs[i].Init("", perSeq+1)
		}
		prompt := prompts[numSeqs/2]
		i := 0
		perOp := timedLoop(b, func() {
			s := &seqs[i%len(seqs)]
			s.hashes = s.hashes[:0]
			if m.Lookup(s, prompt) != perSeq*bs {
				b.Fatal("miss")
			}
			i++
		})
		b.ReportMetric(perOp/perSeq, "cpu-ns/block")
	})
}
