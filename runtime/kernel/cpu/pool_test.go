package cpu

import (
	"sync/atomic"
	"testing"
)

func TestPoolRunsEveryPartOnce(t *testing.T) {
	for _, threads := range []int{1, 2, 5} {
		p := newPool(threads)
		for _, maxParts := range []int{0, 1, 3, 16} {
			var hits [16]atomic.Int32
			var gotParts atomic.Int32
			p.run(maxParts, func(part, parts int) {
				hits[part].Add(1)
				gotParts.Store(int32(parts))
			})
			want := max(1, min(threads, maxParts))
			if int(gotParts.Load()) != want {
				t.Errorf("threads %d maxParts %d: parts %d, want %d", threads, maxParts, gotParts.Load(), want)
			}
			for i := range hits {
				if h, w := hits[i].Load(), int32(0); i < want && h != 1 || i >= want && h != w {
					t.Errorf("threads %d maxParts %d: part %d ran %d times", threads, maxParts, i, h)
				}
			}
		}
		p.close()
	}
}

func TestSplitCoversRange(t *testing.T) {
	for _, tc := range []struct{ n, parts, align int }{{0, 2, 4}, {5, 2, 4}, {17, 3, 4}, {1000, 7, 1}, {3, 4, 1}} {
		next := 0
		for part := range tc.parts {
			lo, hi := split(tc.n, part, tc.parts, tc.align)
			if lo != next || hi < lo || (hi != tc.n && hi%tc.align != 0) {
				t.Fatalf("%+v part %d: [%d, %d) after %d", tc, part, lo, hi, next)
			}
			next = hi
		}
		if next != tc.n {
			t.Errorf("%+v: covered [0, %d)", tc, next)
		}
	}
}

func BenchmarkPoolDispatch(b *testing.B) {
	p := newPool(2)
	defer p.close()
	var sink atomic.Int64
	for b.Loop() {
		p.run(2, func(part, _ int) { sink.Add(int64(part)) })
	}
}
