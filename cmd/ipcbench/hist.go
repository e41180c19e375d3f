package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram records durations in log-linear buckets, HDR-style: each power
// of two is split into 2^subBits buckets, so a percentile is exact to within
// 1/2^subBits (3%) of its value, whatever the range, with no samples kept.
type histogram struct {
	counts [64 << subBits]uint64
	total  uint64
}

const subBits = 5

func bucket(ns uint64) int {
	if ns < 1<<subBits {
		return int(ns)
	}
	e := bits.Len64(ns) - 1 - subBits // ns >> e has subBits+1 bits
	return (e+1)<<subBits + int(ns>>e) - 1<<subBits
}

// low returns the smallest value that falls in bucket i.
func low(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	e := i>>subBits - 1
	return (uint64(i&(1<<subBits-1)) + 1<<subBits) << e
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucket(uint64(d))]++
	h.total++
}

// percentile returns the value below which a fraction p of the samples fall,
// as the midpoint of its bucket.
func (h *histogram) percentile(p float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p * float64(h.total)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration((low(i) + low(i+1)) / 2)
		}
	}
	return 0
}
