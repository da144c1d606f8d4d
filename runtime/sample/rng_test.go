package sample

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// splitMix64 is the textbook SplitMix64 generator, written independently
// of rng.go: state += gamma; output the mixed state.
type splitMix64 struct{ state uint64 }

func (g *splitMix64) next() uint64 {
	g.state += 0x9E3779B97F4A7C15
	z := g.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func TestRandomBitsFollowTheStreamDefinition(t *testing.T) {
	for _, seed := range []uint64{0, 1, 42, 1 << 63, math.MaxUint64} {
		key := (&splitMix64{seed}).next()
		g := &splitMix64{key}
		for offset := range uint64(200) {
			assert.Equal(t, g.next(), RandomBits(seed, offset), "seed %d offset %d", seed, offset)
		}
	}
}

// TestUniformVectors pins values of the specification, computed with an
// independent Python implementation of it, so that other backends (CUDA)
// can check their port against the same numbers. SplitMix64's first output
// for state 0 is the published 0xE220A8397B1DCDAF.
func TestUniformVectors(t *testing.T) {
	assert.Equal(t, uint64(0xE220A8397B1DCDAF), (&splitMix64{0}).next())
	tests := []struct {
		seed, offset uint64
		bits         uint64
		uniform      float64
	}{
		{0, 0, 0xa706dd2f4d197e6f, 0.6524484863740322},
		{0, 1, 0xb382a305f4414f5e, 0.7012121095215252},
		{42, 0, 0x57e1faba65107204, 0.34329192209867343},
		{42, 7, 0xbc16a3d4cc48678e, 0.7347204584623639},
		{math.MaxUint64, 123456789, 0x4a400bf28932824c, 0.2900397746208885},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.bits, RandomBits(tc.seed, tc.offset), "seed %d offset %d", tc.seed, tc.offset)
		assert.Equal(t, tc.uniform, Uniform(tc.seed, tc.offset), "seed %d offset %d", tc.seed, tc.offset)
	}
}

func TestUniformRangeAndMoments(t *testing.T) {
	const n = 200000
	sum, sumSq := 0.0, 0.0
	var buckets [16]int
	for i := range uint64(n) {
		u := Uniform(i/1000, i%1000)
		if u < 0 || u >= 1 {
			t.Fatalf("uniform %v outside [0, 1)", u)
		}
		sum += u
		sumSq += u * u
		buckets[int(u*16)]++
	}
	assert.InDelta(t, 0.5, sum/n, 5*math.Sqrt(1.0/12/n))
	assert.InDelta(t, 1.0/3, sumSq/n, 0.005)
	for b, c := range buckets {
		assert.InDelta(t, n/16, c, 5*math.Sqrt(n/16), "bucket %d", b)
	}
}
