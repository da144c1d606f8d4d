package sample

import (
	"math"
	"testing"
)

func TestExpNegAccuracy(t *testing.T) {
	worst := 0.0
	for i := range 2_000_000 {
		x := -708 * float64(i) / 2_000_000
		if i%2 == 1 {
			x = -2 * float64(i) / 2_000_000 // dense near 0
		}
		got, want := expNeg(x), math.Exp(x)
		if rel := math.Abs(got-want) / want; rel > worst {
			worst = rel
		}
	}
	if worst > 1e-11 {
		t.Fatalf("worst relative error %g", worst)
	}
	if expNeg(0) != 1 || expNeg(-709) != 0 || expNeg(math.Inf(-1)) != 0 {
		t.Fatal("edge values")
	}
}

func BenchmarkExp(b *testing.B) {
	xs := make([]float64, 4096)
	for i := range xs {
		xs[i] = -30 * float64(i) / 4096
	}
	b.Run("math", func(b *testing.B) {
		s := 0.0
		for b.Loop() {
			for _, x := range xs {
				s += math.Exp(x)
			}
		}
		_ = s
	})
	b.Run("expNeg", func(b *testing.B) {
		s := 0.0
		for b.Loop() {
			for _, x := range xs {
				s += expNeg(x)
			}
		}
		_ = s
	})
}
