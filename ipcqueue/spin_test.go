package ipcqueue

import (
	"testing"
	"time"
)

// TestSpinRecoversAfterIdle: after an idle period has worn a handle's spin
// budget down to minSpin, waits that are steadily much shorter than its
// Spin bring the budget back, so they are caught by spinning again instead
// of each paying a futex sleep and wake.
func TestSpinRecoversAfterIdle(t *testing.T) {
	const maxSpin = 400 * time.Microsecond
	q := spinning(heapQueue(t, 4096, nil), maxSpin)
	ctx := t.Context()
	msg := make([]byte, 8)
	// handoff puts n messages, each d after the consumer took the one
	// before (and so began waiting in Get again); short delays are busy
	// (a timer would add its own, much longer, latency).
	handoff := func(n int, d time.Duration) {
		got := make(chan error)
		go func() {
			for range n {
				_, err := q.Get(ctx)
				got <- err
			}
		}()
		for range n {
			if d >= time.Millisecond {
				time.Sleep(d)
			}
			for t0 := time.Now(); time.Since(t0) < d; {
			}
			if err := q.Put(ctx, msg); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatal(err)
			}
		}
	}
	// Idle: waits of 3 ms, far beyond the budget, wear it down to its
	// floor (robust's minSpin, 2 us).
	handoff(12, 3*time.Millisecond)
	if b := q.getSpin.Budget(); b > 2*time.Microsecond {
		t.Fatalf("after idle waits the budget is %v, want the floor", b)
	}
	// Busy: waits of about 30 us.
	const n = 40
	before := q.Stats().Waits
	handoff(n, 30*time.Microsecond)
	sleeps := q.Stats().Waits - before
	b := q.getSpin.Budget()
	t.Logf("%d of %d short waits slept; budget now %v", sleeps, n, b)
	if b <= 2*time.Microsecond {
		t.Fatalf("after %d waits of about 30 us the budget is still %v", n, b)
	}
	if sleeps > n/2 {
		t.Fatalf("%d of %d waits of about 30 us slept on the futex: the spin budget did not recover", sleeps, n)
	}
}

// TestSetSpinConcurrent changes a handle's spin budget while other
// goroutines wait on it (the race detector checks the spinner).
func TestSetSpinConcurrent(t *testing.T) {
	q := heapQueue(t, 4096, nil)
	ctx := t.Context()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			if _, err := q.Get(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	setter := make(chan struct{})
	go func() {
		defer close(setter)
		for i := range 2000 {
			q.SetSpin(time.Duration(i%3-1) * time.Microsecond)
		}
	}()
	for range 2000 {
		if err := q.Put(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	<-setter
}
