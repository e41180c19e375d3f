package main

import (
	"math/big"
	"math/bits"
)

// sum128 is an unsigned 128-bit integer: the tutorial's sums outgrow int64
// (Python's ints are unbounded), and math/big in the inner loop would cost
// more than the work it measures.
type sum128 struct{ Hi, Lo uint64 }

func (s sum128) add(x uint64) sum128 {
	lo, carry := bits.Add64(s.Lo, x, 0)
	return sum128{s.Hi + carry, lo}
}

func (s sum128) plus(t sum128) sum128 {
	lo, carry := bits.Add64(s.Lo, t.Lo, 0)
	return sum128{s.Hi + t.Hi + carry, lo}
}

func (s sum128) String() string {
	v := new(big.Int).SetUint64(s.Hi)
	v.Lsh(v, 64)
	return v.Or(v, new(big.Int).SetUint64(s.Lo)).String()
}

// maxJobN is the largest n for which every term of job(n) fits in a uint64.
const maxJobN = 2_642_246

// job is the tutorial's work: the sum over i < n of i + i² + i³, exact for
// n up to maxJobN (the sum itself may grow past 2⁶⁴: it is 128-bit).
func job(n int) sum128 {
	var s sum128
	for i := range uint64(n) {
		s = s.add(i + i*i + i*i*i)
	}
	return s
}
