package sample

// The sampler's random numbers are counter based: the uniform used for a
// row is a pure function of the request's seed and the index of the token
// being sampled, so a request's draws never depend on what else is in the
// batch, on the backend's thread count, or on earlier calls.
//
// Specification (all arithmetic on uint64, wrapping mod 2^64):
//
//	gamma = 0x9E3779B97F4A7C15
//	mix(z):  z ^= z >> 30; z *= 0xBF58476D1CE4E5B9
//	         z ^= z >> 27; z *= 0x94D049BB133111EB
//	         z ^= z >> 31; return z
//	key      = mix(seed + gamma)
//	bits     = mix(key + (offset+1)*gamma)
//	uniform  = float64(bits >> 11) * 2^-53        // in [0, 1), 53 bits
//
// mix is SplitMix64's output function: key is the first output of a
// SplitMix64 generator started at state seed, and bits is output number
// offset+1 of a SplitMix64 generator started at state key.

const (
	splitMixGamma = 0x9E3779B97F4A7C15
	splitMixMul1  = 0xBF58476D1CE4E5B9
	splitMixMul2  = 0x94D049BB133111EB
)

// mix64 is SplitMix64's finaliser (a bijection on uint64).
func mix64(z uint64) uint64 {
	z ^= z >> 30
	z *= splitMixMul1
	z ^= z >> 27
	z *= splitMixMul2
	z ^= z >> 31
	return z
}

// RandomBits returns the 64 random bits for (seed, offset); see the
// specification above.
func RandomBits(seed, offset uint64) uint64 {
	key := mix64(seed + splitMixGamma)
	return mix64(key + (offset+1)*splitMixGamma)
}

// Uniform returns the uniform number in [0, 1) that the sampler uses for
// the token at index offset of a request seeded with seed.
func Uniform(seed, offset uint64) float64 {
	return float64(RandomBits(seed, offset)>>11) * (1.0 / (1 << 53))
}
