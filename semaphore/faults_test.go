//go:build linux

package semaphore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// Lock words, as internal/robust lays them out (its "Robust lock").
const (
	wordInconsistent   = 1 << 62
	wordNotRecoverable = 1 << 63
)

// lockWord returns the lock word of the robust lock at the start of mem.
func lockWord(mem []byte) *atomic.Uint64 { return u64(mem, robust.OffWord) }

// deadToken returns a valid liveness token, of this process's registry,
// that no process holds: a dead holder's.
func deadToken(t testing.TB) uint64 {
	t.Helper()
	me := self()
	for n := me.Nonce() + 1; ; n++ {
		tok := liveness.Token(uint64(me)&^(1<<20-1) | uint64(n%(1<<20-1)+1))
		if tok != me && liveness.Check(tok) == liveness.Dead {
			return uint64(tok)
		}
	}
}

// unknownToken is a valid token whose liveness cannot be proven: its uid
// has no registry.
const unknownToken = uint64(4_000_000_007)<<30 | 1<<20 | 5

// TestMutexWords writes every kind of lock word into a Mutex: a dead
// holder's is taken over with ErrOwnerDead (inconsistent or not), a not
// recoverable one is refused, a holder that cannot be proven dead is never
// robbed, and an impossible word is ErrCorrupt at once and stays as it
// was. Nothing hangs or panics; the sleepers word's value does not matter.
func TestMutexWords(t *testing.T) {
	dead := deadToken(t)
	for _, tc := range []struct {
		name     string
		word     uint64
		sleepers uint32
		want     error // of LockContext with a 20 ms deadline
	}{
		{"free", 0, 0, nil},
		{"free-garbage-sleepers", 0, 0xffffffff, nil},
		{"dead-holder", dead, 1, ErrOwnerDead},
		{"dead-holder-inconsistent", dead | wordInconsistent, 0, ErrOwnerDead},
		{"not-recoverable", wordNotRecoverable, 0, ErrNotRecoverable},
		{"unknown-holder", unknownToken, 0, context.DeadlineExceeded},
		{"unknown-holder-inconsistent", unknownToken | wordInconsistent, 0, context.DeadlineExceeded},
		{"inconsistent-nobody", wordInconsistent, 0, ErrCorrupt},
		{"both-flags", wordNotRecoverable | wordInconsistent, 0, ErrCorrupt},
		{"all-ones", ^uint64(0), 0, ErrCorrupt},
		{"nonce-zero", uint64(1000) << 30, 0, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := heapMutex(t)
			w := lockWord(m.mem)
			w.Store(tc.word)
			m.lock.Sleepers().Store(tc.sleepers)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			defer cancel()
			begin := time.Now()
			err := m.LockContext(ctx)
			if d := time.Since(begin); d > slowBound {
				t.Errorf("LockContext took %v", d)
			}
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("LockContext = %v, want %v", err, tc.want)
			}
			ok, terr := m.TryLock()
			switch {
			case tc.want == nil:
				if ok || terr != nil {
					t.Fatalf("TryLock of a lock we hold = %v, %v", ok, terr)
				}
			case errors.Is(tc.want, ErrOwnerDead):
				if ok || terr != nil {
					t.Fatalf("TryLock of a lock we took over = %v, %v", ok, terr)
				}
				if h, inc := m.lock.Holder(); h != self() || !inc {
					t.Fatalf("after the takeover: holder %v, inconsistent %v", h, inc)
				}
				if err := m.MarkConsistent(); err != nil {
					t.Fatal(err)
				}
			case errors.Is(tc.want, context.DeadlineExceeded):
				if ok || terr != nil {
					t.Fatalf("TryLock robbed a holder not proven dead: %v, %v", ok, terr)
				}
				if w.Load() != tc.word {
					t.Fatalf("word %#x, was %#x", w.Load(), tc.word)
				}
				if err := m.Unlock(); !errors.Is(err, ErrNotOwner) {
					t.Fatalf("Unlock of another's lock = %v", err)
				}
				return
			default: // not recoverable, corrupt
				if ok || !errors.Is(terr, tc.want) {
					t.Fatalf("TryLock = %v, %v, want false, %v", ok, terr, tc.want)
				}
				if w.Load() != tc.word {
					t.Fatalf("word %#x, was %#x", w.Load(), tc.word)
				}
				return
			}
			if err := m.Unlock(); err != nil {
				t.Fatal(err)
			}
			if err := m.Lock(); err != nil {
				t.Fatalf("Lock after repair = %v", err)
			}
			m.Unlock()
			if w.Load() != 0 {
				t.Fatalf("word %#x after Unlock", w.Load())
			}
		})
	}
}

// TestSemaphoreCorrupt corrupts the slot count after attach, a slot, and
// the guard: no operation panics or reads out of range, dead or impossible
// holders are reclaimed, a guard whose holder died is repaired, and an
// impossible guard word is ErrCorrupt, promptly.
func TestSemaphoreCorrupt(t *testing.T) {
	seg, _ := shm.NewHeap(SemaphoreSize(&SemaphoreOptions{Holders: 2}))
	s, err := InitSemaphoreAt(seg, 0, 2, &SemaphoreOptions{Holders: 2, Bounded: true})
	if err != nil {
		t.Fatal(err)
	}
	// The slot count after attach: this handle keeps its own copy.
	for _, n := range []uint32{0, 3, 1 << 20, 0xffffffff} {
		u32(s.mem, offSemNSlots).Store(n)
		if !s.TryAcquire() || s.Release() != nil {
			t.Fatalf("nslots %d: acquire/release failed", n)
		}
		if _, err := SemaphoreAt(seg, 0); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("attach with nslots %d = %v, want ErrCorrupt", n, err)
		}
	}
	u32(s.mem, offSemNSlots).Store(2)
	// Both permits held by a token that names nobody, or by a dead
	// process, with a huge count; or a count with no token (a claim cut
	// short).
	for _, tok := range []uint64{1 << 63, deadToken(t), 0} {
		sl := s.slot(1)
		sl.count.Store(0xffffffff)
		sl.token.Store(tok)
		s.avail.Store(0)
		if !s.TryAcquire() {
			t.Fatalf("token %#x: permits were not reclaimed", tok)
		}
		if sl.token.Load() != 0 || sl.count.Load() != 0 || s.Value() != 1 {
			t.Fatalf("token %#x: slot %#x/%d, value %d after reclaim", tok, sl.token.Load(), sl.count.Load(), s.Value())
		}
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}
	// A holder whose liveness cannot be proven keeps its permits.
	sl := s.slot(1)
	sl.count.Store(2)
	sl.token.Store(unknownToken)
	s.avail.Store(0)
	if s.TryAcquire() {
		t.Fatal("acquired a permit of a holder not proven dead")
	}
	sl.free()
	s.avail.Store(2)
	// The guard: held by a dead process, inconsistent or not recoverable
	// (an internal lock is repaired whatever it says).
	for _, w := range []uint64{deadToken(t), deadToken(t) | wordInconsistent, wordNotRecoverable} {
		lockWord(s.mem).Store(w)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		err := s.Acquire(ctx)
		cancel()
		if err != nil {
			t.Fatalf("guard %#x: Acquire = %v", w, err)
		}
		if got := lockWord(s.mem).Load(); got != 0 {
			t.Fatalf("guard %#x: word %#x after Acquire", w, got)
		}
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}
	// An impossible guard word.
	lockWord(s.mem).Store(^uint64(0))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := s.Acquire(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Acquire with a corrupt guard = %v", err)
	}
	if err := s.Release(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Release with a corrupt guard = %v", err)
	}
	if s.TryAcquire() {
		t.Fatal("TryAcquire with a corrupt guard")
	}
	lockWord(s.mem).Store(0)
	if s.Value() != 2 {
		t.Fatalf("value %d, want 2", s.Value())
	}
}

// TestBarrierCorruptCount corrupts the arrival count while a party waits:
// the next arrival gets ErrCorrupt, the waiting party ErrBroken, at once.
func TestBarrierCorruptCount(t *testing.T) {
	for _, n := range []uint32{3, 1000, 0xffffffff} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			seg, _ := shm.NewHeap(BarrierSize(3))
			b, err := InitBarrierAt(seg, 0, 3)
			if err != nil {
				t.Fatal(err)
			}
			other := make(chan error, 1)
			go func() { _, err := b.Wait(t.Context()); other <- err }()
			for b.arrive.Load() != 1 {
				time.Sleep(time.Millisecond)
			}
			b.arrive.Store(n)
			u32(b.mem, offBarParties).Store(0) // after attach: not re-read
			if _, err := b.Wait(t.Context()); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Wait with %d arrived = %v, want ErrCorrupt", n, err)
			}
			if err := within(t, other, "the waiting party"); !errors.Is(err, ErrBroken) {
				t.Fatalf("waiting party got %v", err)
			}
			if _, err := BarrierAt(seg, 0); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("attach with 0 parties = %v", err)
			}
		})
	}
}

// TestCancelMidWait cancels a context while each type waits in shared
// memory, and checks the call returns ctx.Err() and the shared state is as
// it was. Each cancel comes once the waiter is asleep (asleepIn), so it is
// the cancel's wake-up that must end the sleep: the Mutex, Event and guard
// waiters here wait for their own process, have no slow check, and without
// that wake-up would sleep past slowBound. (The Semaphore's wait for
// permits follows their holders and would also end, later, by its slow
// check: it shows only that the state is left as it was.)
func TestCancelMidWait(t *testing.T) {
	cancelled := func(t *testing.T, fn string, wait func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- wait(ctx) }()
		asleepIn(t, 1, fn)
		cancel()
		if err := within(t, done, "the cancelled call"); !errors.Is(err, context.Canceled) {
			t.Fatalf("wait = %v, want context.Canceled", err)
		}
	}
	t.Run("Mutex", func(t *testing.T) {
		m := newMutex(t)
		m.Lock()
		before := lockWord(m.mem).Load()
		cancelled(t, "(*Mutex).LockContext", m.LockContext)
		if after := lockWord(m.mem).Load(); before != after {
			t.Fatalf("lock word %#x, was %#x", after, before)
		}
		m.Unlock()
	})
	t.Run("Semaphore", func(t *testing.T) {
		s := newSemaphore(t, 1, &SemaphoreOptions{Bounded: true})
		if !s.TryAcquire() {
			t.Fatal("TryAcquire")
		}
		cancelled(t, "(*Semaphore).Acquire", s.Acquire)
		if s.Value() != 0 || s.sleepers.Load() != 0 || s.slot(0).count.Load() != 1 {
			t.Fatalf("value %d sleepers %d", s.Value(), s.sleepers.Load())
		}
		// Waiting for the guard, held by another goroutine of ours.
		s.guard.Lock(t.Context())
		cancelled(t, "(*Semaphore).Acquire", s.Acquire)
		s.guard.Unlock()
		if err := s.Release(); err != nil || s.Value() != 1 {
			t.Fatalf("Release = %v, value %d", err, s.Value())
		}
	})
	t.Run("Event", func(t *testing.T) {
		e, _ := NewEvent()
		defer e.Close()
		cancelled(t, "(*Event).Wait", e.Wait)
		if e.IsSet() || e.word.Load() != 0 {
			t.Fatalf("word %#x", e.word.Load())
		}
	})
	t.Run("Barrier", func(t *testing.T) {
		// Waiting for the guard: the party has not arrived, nothing breaks.
		b, _ := NewBarrier(2)
		defer b.Close()
		b.guard.Lock(t.Context())
		cancelled(t, "(*Barrier).Wait", func(ctx context.Context) error { _, err := b.Wait(ctx); return err })
		b.guard.Unlock()
		if b.Broken() || b.arrive.Load() != 0 {
			t.Fatalf("broken %v, arrived %d", b.Broken(), b.arrive.Load())
		}
		// Arrived and waiting: giving up breaks it for the others (the
		// issue's rule), and says so with ctx.Err().
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { _, err := b.Wait(ctx); done <- err }()
		for b.arrive.Load() != 1 { // arrived, before the cancel
			time.Sleep(100 * time.Microsecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait = %v, want context.Canceled", err)
		}
		if !b.Broken() {
			t.Fatal("a party gave up and the barrier is not broken")
		}
	})
	t.Run("FileMutex", func(t *testing.T) {
		m := newFileMutex(t)
		o, err := NewFileMutex(m.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		o.Lock()
		cancelled(t, "(*FileMutex).LockContext", m.LockContext)
		cancelled(t, "(*FileMutex).LockSharedContext", m.LockSharedContext)
		m2 := make(chan error, 1)
		go func() { m2 <- m.LockContext(t.Context()) }() // first in the gate: waits in flock
		asleepIn(t, 1, "(*FileMutex).flock")
		cancelled(t, "(*gate).acquire", m.LockContext) // waits in the gate behind m2
		if o.rec.dirty.Load() != 1 || o.rec.state.Load() != stateConsistent {
			t.Fatal("record changed")
		}
		o.Unlock()
		if err := within(t, m2, "Lock after the holder unlocked"); err != nil {
			t.Fatalf("Lock after the holder unlocked = %v", err)
		}
		m.Unlock()
	})
}

// TestCloseWakesWaiters closes each type while goroutines wait in it: they
// return os.ErrClosed, and every later call fails cleanly (nothing touches
// the unmapped segment). Close comes once every waiter is asleep
// (asleepIn). The Mutex's waiters (its holder is their own process) and
// the Event's have no slow check: only Close's wake-up ends their sleep,
// and without it they, and Close, which waits for them, would hang past
// slowBound. (The Semaphore's, Barrier's and FileMutex's waiters look at
// holders on a slow timer and would return later without it.)
func TestCloseWakesWaiters(t *testing.T) {
	closing := func(t *testing.T, n int, fn string, wait func() error, closeIt func() error) {
		t.Helper()
		done := make(chan error, n)
		started, before := time.Now(), robust.Unwoken()
		for range n {
			go func() { done <- wait() }()
		}
		asleepIn(t, n, fn)
		closed := make(chan error, 1)
		closeAt := time.Now()
		go func() { closed <- closeIt() }()
		for range n {
			if err := within(t, done, "a waiter after Close"); !errors.Is(err, os.ErrClosed) {
				t.Fatalf("waiter got %v, want os.ErrClosed", err)
			}
		}
		// A waiter that watches a holder (Semaphore, Barrier) would also
		// return at its first slow check, CheckPeriod after it fell
		// asleep: robust.Unwoken tells that from Close's wake-up, when
		// Close came well before that check (a loaded machine may make it
		// later, and the count then proves nothing).
		if late := closeAt.Sub(started); late < robust.CheckPeriod/2 {
			if d := robust.Unwoken() - before; d != 0 {
				t.Fatalf("%d waiters ran into their slow check after Close: its wake-up was lost", d)
			}
		} else {
			t.Logf("Close came %v after the waiters started: too late to tell its wake-up from a slow check", late)
		}
		if err := within(t, closed, "Close"); err != nil {
			t.Fatal(err)
		}
		if err := closeIt(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
	}
	ctx := context.Background()
	t.Run("Mutex", func(t *testing.T) {
		m, _ := NewMutex()
		m.Lock()
		closing(t, 3, "(*Mutex).Lock", m.Lock, m.Close)
		for _, err := range []error{m.Lock(), m.Unlock(), m.MarkConsistent()} {
			if !errors.Is(err, os.ErrClosed) {
				t.Fatalf("call after Close = %v", err)
			}
		}
		if ok, err := m.TryLock(); ok || !errors.Is(err, os.ErrClosed) {
			t.Fatalf("TryLock after Close = %v, %v", ok, err)
		}
	})
	t.Run("Semaphore", func(t *testing.T) {
		s, _ := NewSemaphore(0, nil)
		closing(t, 3, "(*Semaphore).Acquire", func() error { return s.Acquire(ctx) }, s.Close)
		if s.TryAcquire() || s.Value() != 0 || s.Reclaimed() != 0 || !errors.Is(s.Release(), os.ErrClosed) {
			t.Fatal("calls after Close did not fail")
		}
	})
	t.Run("Event", func(t *testing.T) {
		e, _ := NewEvent()
		closing(t, 3, "(*Event).Wait", func() error { return e.Wait(ctx) }, e.Close)
		e.Set()
		e.Clear()
		if e.IsSet() || !errors.Is(e.Wait(ctx), os.ErrClosed) {
			t.Fatal("calls after Close did not fail")
		}
	})
	t.Run("Barrier", func(t *testing.T) {
		b, _ := NewBarrier(4)
		closing(t, 2, "(*Barrier).Wait", func() error { _, err := b.Wait(ctx); return err }, b.Close)
		if _, err := b.Wait(ctx); !errors.Is(err, os.ErrClosed) || !errors.Is(b.Abort(), os.ErrClosed) || !b.Broken() {
			t.Fatalf("calls after Close: %v", err)
		}
	})
	t.Run("FileMutex", func(t *testing.T) {
		m, err := NewFileMutex(filepath.Join(t.TempDir(), "lock"))
		if err != nil {
			t.Fatal(err)
		}
		o, err := NewFileMutex(m.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		o.Lock()
		// One waits in flock (polling, cancellable), the others in the gate
		// and the reader lock.
		closing(t, 3, "(*FileMutex).LockContext", func() error { return m.LockContext(t.Context()) }, m.Close)
		for _, err := range []error{m.Lock(), m.Unlock(), m.LockShared(), m.UnlockShared(), m.MarkConsistent()} {
			if !errors.Is(err, os.ErrClosed) {
				t.Fatalf("call after Close = %v", err)
			}
		}
		o.Unlock()
	})
	t.Run("FileMutex-blocking-Lock", func(t *testing.T) {
		// Lock without a context waits for another open file's flock, and
		// Close wakes it all the same.
		m, _ := NewFileMutex(filepath.Join(t.TempDir(), "lock"))
		o, _ := NewFileMutex(m.Path())
		defer o.Close()
		o.Lock()
		closing(t, 1, "(*FileMutex).Lock", m.Lock, m.Close)
		o.Unlock()
		if ok, err := o.TryLock(); !ok || err != nil {
			t.Fatalf("the lock is held by the closed handle: %v, %v", ok, err)
		}
		o.Unlock()
	})
}

// TestCloseHeldFileMutex closes a handle that holds the lock: the kernel
// releases it and the next holder is told, like after a death.
func TestCloseHeldFileMutex(t *testing.T) {
	m := newFileMutex(t)
	o, _ := NewFileMutex(m.Path())
	o.Lock()
	o.Close()
	if ok, err := m.TryLock(); !ok || !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("TryLock after the holder closed = %v, %v", ok, err)
	}
	m.MarkConsistent()
	m.Unlock()
}
