package main

import (
	"math/big"
	"testing"
)

func TestJob(t *testing.T) {
	for _, c := range []struct {
		n    int
		want string
	}{
		{0, "0"},
		{1000, "249833583000"},
		{1_000_000, "249999833333583333000000"},
	} {
		if got := job(c.n).String(); got != c.want {
			t.Errorf("job(%d) = %s, want %s", c.n, got, c.want)
		}
	}
	// Against math/big, across a carry out of the low word.
	n := 300_000
	want := new(big.Int)
	for i := range int64(n) {
		x := big.NewInt(i)
		want.Add(want, x)
		want.Add(want, new(big.Int).Mul(x, x))
		want.Add(want, new(big.Int).Mul(x, new(big.Int).Mul(x, x)))
	}
	if got := job(n).String(); got != want.String() {
		t.Errorf("job(%d) = %s, want %s", n, got, want)
	}
	if got := job(1_000_000).plus(job(1_000_000)).String(); got != "499999666667166666000000" {
		t.Errorf("two jobs = %s", got)
	}
}
