package cpu

import "math"

// expf is a float32 exponential accurate to a few ulp, several times
// faster than math.Exp: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-6
// Taylor polynomial (truncation error < 2e-8 relative), 2^n by building
// the exponent bits. It underflows to 0 below -87.3 and overflows to +Inf
// above 88.3 (a little before float32 does).
func expf(x float32) float32 {
	const (
		log2e = 1.4426950408889634
		ln2hi = 0.693145751953125 // ln 2 with its low bits cut, so n·ln2hi is exact
		ln2lo = 1.428606765330187e-06
	)
	switch {
	case x != x:
		return x
	case x < -87.3:
		return 0
	case x > 88.3:
		return float32(math.Inf(1))
	}
	t := x * log2e
	var n int32
	if t < 0 {
		n = int32(t - 0.5)
	} else {
		n = int32(t + 0.5)
	}
	fn := float32(n)
	r := (x - fn*ln2hi) - fn*ln2lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720))))))
	return p * math.Float32frombits(uint32(n+127)<<23)
}
