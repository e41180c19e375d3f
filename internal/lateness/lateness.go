//go:build linux

// Package lateness measures, for tests, how late a wait returns after its
// context's deadline, beside a bare futex sleep to the same kind of
// deadline measured alternately in the same run: how late a sleeping
// thread runs again is the kernel scheduler's to say, and only the
// difference is the wait's.
package lateness

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/futex"
)

// Percentile returns the p-th percentile (0..100) of ds, which it sorts.
func Percentile(ds []time.Duration, p float64) time.Duration {
	slices.Sort(ds)
	return ds[int(float64(len(ds)-1)*p/100)]
}

// someMs returns a duration of 1 to 4 ms, at random.
func someMs() time.Duration { return time.Millisecond + rand.N(3*time.Millisecond) }

// Of calls wait with a deadline 1 to 4 ms away and returns how late it
// returned after it. It fails t if wait returns another error than want,
// or returns before the deadline.
func Of(t testing.TB, wait func(ctx context.Context) error, want error) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), someMs())
	defer cancel()
	deadline, _ := ctx.Deadline()
	err := wait(ctx)
	late := time.Since(deadline)
	switch {
	case !errors.Is(err, want):
		t.Fatalf("wait = %v, want %v", err, want)
	case late < 0:
		t.Fatalf("returned %v before the deadline", -late)
	}
	return late
}

// Bare returns how late a bare futex sleep to a deadline 1 to 4 ms away
// wakes up: the kernel's and the runtime's share of any lateness.
func Bare() time.Duration {
	var word uint32
	deadline := time.Now().Add(someMs())
	// A thread preempted here may find the deadline past: a negative
	// timeout would be futex.Forever.
	if d := time.Until(deadline); d > 0 {
		futex.Wait(&word, 0, d)
	}
	return time.Since(deadline)
}

// Check measures rounds waits (see Of) alternated with as many bare
// sleeps, logs the percentiles of both, and fails t unless the waits'
// median is within 1 ms of the bare sleeps' and their 90th percentile
// within twice the bare sleeps' plus 2 ms. A wait that sleeps in slices
// (a 20 ms polling slice puts the median near 10 ms) misses that every
// time; a loaded machine's stalls, a few in a hundred, do not move it, and
// a sample that a burst of load spoils is taken again, up to three in all.
// The p99 that issue 14 asks for (1 ms) is ipcbench's to show, on a quiet
// machine.
func Check(t testing.TB, rounds int, wait func(ctx context.Context) error, want error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		var late, base []time.Duration
		for range rounds {
			late = append(late, Of(t, wait, want))
			base = append(base, Bare())
		}
		p50, p90, p99 := Percentile(late, 50), Percentile(late, 90), Percentile(late, 99)
		b50, b90, b99 := Percentile(base, 50), Percentile(base, 90), Percentile(base, 99)
		t.Logf("lateness over %d waits: p50 %v, p90 %v, p99 %v (bare futex sleeps: p50 %v, p90 %v, p99 %v)",
			rounds, p50, p90, p99, b50, b90, b99)
		if p50 <= b50+time.Millisecond && p90 <= 2*b90+2*time.Millisecond {
			return
		}
		if attempt == 3 {
			t.Errorf("lateness p50 %v, p90 %v, against %v and %v for a bare futex sleep, in three samples", p50, p90, b50, b90)
			return
		}
	}
}
