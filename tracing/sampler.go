package tracing

import (
	"math"
	"math/rand/v2"
	"sync"
)

// RequestSampler makes the one journey-sampling decision per API request.
// Implementations must be safe for concurrent use.
type RequestSampler interface {
	SampleRequest() bool
}

// StepSampler decides whether a scheduler step is traced. It is called on
// the engine goroutine only.
type StepSampler interface {
	SampleStep(step uint64) bool
}

// NewRateSampler samples each request independently with probability rate,
// using the process-wide random source. Rate 0 never samples, 1 always does.
func NewRateSampler(rate float64) RequestSampler { return rateSampler{rate: rate} }

type rateSampler struct{ rate float64 }

func (s rateSampler) SampleRequest() bool {
	switch {
	case s.rate >= 1:
		return true
	case s.rate <= 0:
		return false
	}
	return rand.Float64() < s.rate
}

// NewSeededRateSampler is NewRateSampler with its own seeded source, for
// reproducible tests.
func NewSeededRateSampler(rate float64, seed uint64) RequestSampler {
	return &seededRateSampler{rate: rate, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

type seededRateSampler struct {
	mu   sync.Mutex
	rate float64
	rng  *rand.Rand
}

func (s *seededRateSampler) SampleRequest() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64() < s.rate
}

// NewHashStepSampler samples a step when a hash of (seed, step) falls below
// rate: deterministic for a given seed, uniform over steps, and free of
// state. Production uses a random seed; tests use a fixed one.
func NewHashStepSampler(rate float64, seed uint64) StepSampler {
	return hashStepSampler{threshold: rateThreshold(rate), always: rate >= 1, seed: seed}
}

type hashStepSampler struct {
	threshold uint64
	always    bool
	seed      uint64
}

func (s hashStepSampler) SampleStep(step uint64) bool {
	if s.always {
		return true
	}
	return mix64(s.seed^(step*0x9e3779b97f4a7c15)) < s.threshold
}

// rateThreshold maps a rate in [0,1] onto the uint64 range.
func rateThreshold(rate float64) uint64 {
	if rate <= 0 {
		return 0
	}
	if rate >= 1 {
		return math.MaxUint64
	}
	return uint64(rate * (1 << 63) * 2)
}

// mix64 is the SplitMix64 finaliser: a bijective avalanche of x.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
