package kerneltest

import (
	"math"
	"testing"
)

func TestNormErr(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name string
		got  []float32
		want []float64
		err  float64
	}{
		{"equal", []float32{1, -2, 3}, []float64{1, -2, 3}, 0},
		{"scaled by 1.1", []float32{1.1, 2.2}, []float64{1, 2}, 0.1},
		{"zero reference", []float32{3, 4}, []float64{0, 0}, 5},
		{"extra got ignored", []float32{1, 99}, []float64{1}, 0},
	}
	for _, tc := range tests {
		if e := NormErr(tc.got, tc.want); math.Abs(e-tc.err) > 1e-6 {
			t.Errorf("%s: NormErr = %v, want %v", tc.name, e, tc.err)
		}
	}
	if e := NormErr([]float32{1, nan}, []float64{1, 1}); !math.IsNaN(e) {
		t.Errorf("NaN in got: NormErr = %v, want NaN (which fails every tolerance)", e)
	}
}
