//go:build linux

package semaphore

import (
	"context"
	"errors"
	"math/rand/v2"
	"os/exec"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// Issue 14: a dead holder is seen within any deadline, and deadlines are
// kept.

// TestDeadHolderWithinDeadline: a holder SIGKILLed while holding is
// reported to a call with a short deadline (shorter than any liveness
// period), never a timeout: a Mutex is taken over, a Semaphore's permit
// comes back to the caller, a Barrier breaks, a FileMutex is taken with
// its record's news. All with real children killed with SIGKILL.
func TestDeadHolderWithinDeadline(t *testing.T) {
	// within calls f with a deadline d away and logs what it took.
	within := func(t *testing.T, d time.Duration, what string, f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		begin := time.Now()
		err := f(ctx)
		t.Logf("%s with a %v deadline on a SIGKILLed holder = %v, after %v", what, d, err, time.Since(begin))
		return err
	}
	t.Run("Mutex-LockContext-10ms", func(t *testing.T) {
		m := newMutex(t)
		kill(t, startUntil(t, "hold", holdArgs{M: m}, "holding"))
		if err := within(t, 10*time.Millisecond, "LockContext", m.LockContext); !errors.Is(err, ErrOwnerDead) {
			t.Fatalf("got %v, want ErrOwnerDead", err)
		}
		if h, inc := m.lock.Holder(); h != self() || !inc {
			t.Fatalf("after ErrOwnerDead: holder %v, inconsistent %v; want this process, inconsistent", h, inc)
		}
		m.MarkConsistent()
		if err := m.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Mutex-waiter-with-deadline-blocked-before-the-kill", func(t *testing.T) {
		m := newMutex(t)
		err := killWhileWaiting(t, startUntil(t, "hold", holdArgs{M: m}, "holding"), func() error {
			return within(t, 2*time.Second, "LockContext", m.LockContext)
		}, m.lock.Sleepers())
		if !errors.Is(err, ErrOwnerDead) {
			t.Fatalf("got %v, want ErrOwnerDead", err)
		}
		m.MarkConsistent()
		m.Unlock()
	})
	t.Run("Semaphore-Acquire-50ms", func(t *testing.T) {
		s := newSemaphore(t, 1, &SemaphoreOptions{Bounded: true})
		kill(t, startUntil(t, "hold", holdArgs{S: s}, "holding"))
		if s.Value() != 0 {
			t.Fatalf("value %d with the only permit held", s.Value())
		}
		// The permit of the dead holder came back, and this call has it:
		// it took it back, so it is told, as the taker-over of a Mutex.
		if err := within(t, 50*time.Millisecond, "Acquire", s.Acquire); !errors.Is(err, ErrOwnerDead) {
			t.Fatalf("got %v, want ErrOwnerDead (permit taken)", err)
		}
		if s.Reclaimed() != 1 || s.Value() != 0 || s.slot(0).token.Load() != uint64(self()) || s.slot(0).count.Load() != 1 {
			t.Fatalf("reclaimed %d, value %d, slot 0 %#x/%d: the permit is not ours", s.Reclaimed(), s.Value(), s.slot(0).token.Load(), s.slot(0).count.Load())
		}
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
		if err := s.Release(); !errors.Is(err, ErrTooManyReleases) {
			t.Fatalf("a second Release = %v: the dead holder's permit was counted twice", err)
		}
	})
	t.Run("Semaphore-TryAcquire", func(t *testing.T) {
		s := newSemaphore(t, 1, nil)
		kill(t, startUntil(t, "hold", holdArgs{S: s}, "holding"))
		if !s.TryAcquire() || s.Reclaimed() != 1 {
			t.Fatalf("TryAcquire of a SIGKILLed holder's permit failed (reclaimed %d)", s.Reclaimed())
		}
	})
	t.Run("Barrier-Wait-20ms", func(t *testing.T) {
		b, cmd := barrierWithParty(t, nil)
		kill(t, cmd)
		err := within(t, 20*time.Millisecond, "Wait", func(ctx context.Context) error { _, err := b.Wait(ctx); return err })
		if !errors.Is(err, ErrBroken) || !b.Broken() {
			t.Fatalf("got %v (broken: %v), want ErrBroken", err, b.Broken())
		}
	})
	t.Run("FileMutex-LockContext-10ms", func(t *testing.T) {
		m := newFileMutex(t)
		kill(t, startUntil(t, "hold", holdArgs{F: m}, "holding"))
		if err := within(t, 10*time.Millisecond, "LockContext", m.LockContext); !errors.Is(err, ErrOwnerDead) {
			t.Fatalf("got %v, want ErrOwnerDead", err)
		}
		if m.rec.dirty.Load() != 1 || m.rec.state.Load() != stateInconsistent || m.rec.owner.Load() != uint64(self()) {
			t.Fatalf("record: dirty %d, state %d, owner %#x", m.rec.dirty.Load(), m.rec.state.Load(), m.rec.owner.Load())
		}
		m.MarkConsistent()
		if err := m.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("FileMutex-waiter-blocked-before-the-kill", func(t *testing.T) {
		m := newFileMutex(t)
		err := killWhileWaiting(t, startUntil(t, "hold", holdArgs{F: m}, "holding"), m.Lock, m.rec.sleepers)
		if !errors.Is(err, ErrOwnerDead) {
			t.Fatalf("Lock = %v, want ErrOwnerDead", err)
		}
		m.MarkConsistent()
		m.Unlock()
	})
}

// killWhileWaiting runs wait in a goroutine, lets it sleep on the
// sleepers word fx (bit 0: announced) past its second slow liveness check
// (at 1 and 3 CheckPeriods; the third is due at 7), kills the helper cmd,
// and returns wait's result. It fails the test if the death was found only
// at or after the third check: it must come from the kernel's notice.
func killWhileWaiting(t *testing.T, cmd *exec.Cmd, wait func() error, fx *atomic.Uint32) error {
	t.Helper()
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- wait() }()
	time.Sleep(3*robust.CheckPeriod + robust.CheckPeriod/2)
	if fx.Load()&1 == 0 {
		t.Fatalf("the waiter is not asleep: sleepers word %#x", fx.Load())
	}
	killed := time.Now()
	kill(t, cmd)
	err := <-done
	t.Logf("%v after the kill", time.Since(killed))
	if time.Now().After(started.Add(7 * robust.CheckPeriod)) {
		t.Errorf("the death was found %v after the kill, at a slow check, not by its notice", time.Since(killed))
	}
	return err
}

// barrierWithParty makes a Barrier of 3 and a helper that has arrived at
// it, started with wrap (nil: none; or a PID-namespace test's startIn).
func barrierWithParty(t *testing.T, wrap func(t *testing.T, name string, v any, line string) *exec.Cmd) (*Barrier, *exec.Cmd) {
	t.Helper()
	b, err := NewBarrier(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if wrap == nil {
		wrap = func(t *testing.T, name string, v any, line string) *exec.Cmd { return startUntil(t, name, v, line) }
	}
	cmd := wrap(t, "hold", holdArgs{B: b}, "waiting")
	for b.arrive.Load() != 1 { // the helper has arrived
		time.Sleep(time.Millisecond)
	}
	return b, cmd
}

// percentile returns the p-th percentile (0..100) of ds, sorted in place.
func percentile(ds []time.Duration, p float64) time.Duration {
	slices.Sort(ds)
	return ds[int(float64(len(ds)-1)*p/100)]
}

// TestDeadlineLateness: each type's wait returns within about a
// millisecond of its deadline (issue 14: within 1 ms at p99), whoever it
// waits for. How late a sleeping thread runs again is the kernel
// scheduler's to say, and a loaded machine delays it by whole time slices,
// so the test measures a bare futex sleep to the same kind of deadline
// alternately with the waits, in the same run, and holds the waits' p99 to
// twice the bare sleeps' p99 plus 2 ms (as internal/robust's test does);
// it logs both. Load comes in bursts that one sample's tail may catch and
// the other's not: a round that misses the bound is measured again, up to
// three times in all; a wait that is late by design (a polling slice)
// misses it every time.
func TestDeadlineLateness(t *testing.T) {
	rounds := 200
	if testing.Short() {
		rounds = 50
	}
	// sample alternates rounds waits, each with a deadline 1 to 4 ms
	// away, with bare futex sleeps to such a deadline, and returns how
	// late each of both returned.
	sample := func(t *testing.T, wait func(ctx context.Context) error, want error) (late, base []time.Duration) {
		t.Helper()
		for range rounds {
			late = append(late, lateBy(t, wait, want))
			base = append(base, futexLateBy())
		}
		return late, base
	}
	measure := func(t *testing.T, wait func(ctx context.Context) error, want error) {
		t.Helper()
		for attempt := 1; ; attempt++ {
			late, base := sample(t, wait, want)
			p50, p99, worst := percentile(late, 50), percentile(late, 99), late[len(late)-1]
			b50, b99 := percentile(base, 50), percentile(base, 99)
			t.Logf("lateness over %d waits: p50 %v, p99 %v, max %v (bare futex sleeps: p50 %v, p99 %v)", rounds, p50, p99, worst, b50, b99)
			if p99 <= 2*b99+2*time.Millisecond {
				return
			}
			if attempt == 3 {
				t.Errorf("p99 lateness %v, against %v for a bare futex sleep, in three rounds", p99, b99)
				return
			}
		}
	}
	t.Run("Mutex-held-by-another-process", func(t *testing.T) {
		m := newMutex(t)
		defer kill(t, startUntil(t, "hold", holdArgs{M: m}, "holding"))
		measure(t, m.LockContext, context.DeadlineExceeded)
	})
	t.Run("Semaphore-permit-held-by-another-process", func(t *testing.T) {
		s := newSemaphore(t, 1, nil)
		defer kill(t, startUntil(t, "hold", holdArgs{S: s}, "holding"))
		measure(t, s.Acquire, context.DeadlineExceeded)
	})
	t.Run("Event", func(t *testing.T) {
		e, err := NewEvent()
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		measure(t, e.Wait, context.DeadlineExceeded)
	})
	t.Run("Barrier", func(t *testing.T) {
		// A party alone at a barrier of two: it gives up at the deadline
		// (which breaks this barrier: a new one each round).
		seg, err := shm.NewHeap(BarrierSize(2))
		if err != nil {
			t.Fatal(err)
		}
		measure(t, func(ctx context.Context) error {
			b, err := InitBarrierAt(seg, 0, 2)
			if err != nil {
				return err
			}
			_, err = b.Wait(ctx)
			return err
		}, context.DeadlineExceeded)
	})
	t.Run("FileMutex-held-by-another-process", func(t *testing.T) {
		m := newFileMutex(t)
		defer kill(t, startUntil(t, "hold", holdArgs{F: m}, "holding"))
		measure(t, m.LockContext, context.DeadlineExceeded)
	})
}

// someMs returns a duration of 1 to 4 ms, at random.
func someMs() time.Duration { return time.Millisecond + rand.N(3*time.Millisecond) }

// lateBy calls wait with a deadline a few ms away, checks that it returns
// want, not before the deadline, and returns how late it did.
func lateBy(t *testing.T, wait func(ctx context.Context) error, want error) time.Duration {
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

// futexLateBy returns how late a bare futex sleep to a deadline a few ms
// away wakes up: the kernel's and the runtime's share of any lateness.
func futexLateBy() time.Duration {
	var word uint32
	deadline := time.Now().Add(someMs())
	// A thread preempted here may find the deadline past: a negative
	// timeout would be futex.Forever.
	if d := time.Until(deadline); d > 0 {
		futex.Wait(&word, 0, d)
	}
	return time.Since(deadline)
}
