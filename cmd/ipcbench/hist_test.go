package main

import (
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	for _, ns := range []uint64{0, 1, 31, 32, 33, 100, 1000, 123456, 1 << 40} {
		i := bucket(ns)
		if ns < low(i) || ns >= low(i+1) {
			t.Errorf("%d in bucket %d = [%d, %d)", ns, i, low(i), low(i+1))
		}
	}
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}} {
		got := h.percentile(c.p)
		if d := got - c.want; d < -c.want/25 || d > c.want/25 {
			t.Errorf("p%v = %v, want %v within 4%%", c.p*100, got, c.want)
		}
	}
}
