package sample

import "math"

// expTable[j] = 2^(j/32).
var expTable = func() (t [32]float64) {
	for j := range t {
		t[j] = math.Exp2(float64(j) / 32)
	}
	return t
}()

// expNeg returns e^x for x <= 0 with a relative error below 1e-11 (0 for
// x < -708, where e^x is below the smallest normal float64; against the
// largest weight, 1, such terms cannot change a float64 sum). Method:
// x = (32k + j)·ln2/32 + r with |r| <= ln2/64, e^x = 2^k · 2^(j/32) · e^r,
// e^r by a degree-5 Taylor polynomial; several times faster than math.Exp.
func expNeg(x float64) float64 {
	const (
		invL  = 32 / math.Ln2
		lHi   = 0.02166084938653512 // ln2/32 truncated to 32 significant bits
		lLo   = math.Ln2/32 - lHi
		magic = 6755399441055744.0 // 1.5·2^52: adding it rounds to an integer
	)
	if !(x >= -708) {
		return 0
	}
	n := (x*invL + magic) - magic
	r := (x - n*lHi) - n*lLo
	ni := int64(n)
	k, j := ni>>5, ni&31
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120)))))
	// Adding k to the exponent field of 2^(j/32) multiplies it by 2^k.
	s := math.Float64frombits(uint64(int64(math.Float64bits(expTable[j])) + k<<52))
	return s * p
}
