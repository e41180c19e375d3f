//go:build linux

package semaphore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
)

func init() {
	helperproc.Register("exit", func([]string) error { return nil })
	// incas locks a Mutex and stops between the CAS that takes it and the
	// store of its owner record, where it waits to be killed.
	helperproc.Register("incas", func(args []string) error {
		var a holdArgs
		if err := receive(args, &a); err != nil {
			return err
		}
		faultAfterCAS = func() {
			fmt.Println("in window")
			time.Sleep(time.Minute)
		}
		return a.M.Lock()
	})
}

// TestMutexDiesBetweenCASAndRecord kills a holder between the CAS that
// took the lock and the store of its owner record, with the record left
// empty by the last Unlock, or naming a live process that is not the
// holder. While the holder lives it is never robbed; once it is dead a
// waiter takes the lock within a second, with ErrOwnerDead.
func TestMutexDiesBetweenCASAndRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		record uint64
	}{
		{"empty-record", 0},
		{"record-of-a-live-process", rec(1, 0)},
		{"record-of-self", selfRec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMutex(t)
			m.Lock()
			m.Unlock()
			m.mu.owner.Store(tc.record)
			cmd := startUntil(t, "incas", holdArgs{M: m}, "in window")
			pid := uint32(cmd.Process.Pid)
			if got := m.mu.word.Load() & pidMask; got != pid {
				t.Fatalf("word holds pid %d, helper is %d", got, pid)
			}
			// Alive in the window: not robbed, even by a waiter that checks.
			if ok, err := m.TryLock(); ok || err != nil {
				t.Fatalf("TryLock robbed a live holder in its window: %v, %v", ok, err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 3*checkEvery)
			err := m.LockContext(ctx)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("LockContext while a live holder is in its window = %v", err)
			}
			done := make(chan error, 1)
			go func() { done <- m.LockContext(t.Context()) }()
			time.Sleep(20 * time.Millisecond)
			killed := time.Now()
			kill(t, cmd)
			select {
			case err := <-done:
				if !errors.Is(err, ErrOwnerDead) {
					t.Fatalf("Lock after the holder died in its window = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the lock was not handed on")
			}
			if d := time.Since(killed); d > time.Second {
				t.Errorf("handed on after %v", d)
			}
			if m.mu.owner.Load() != selfRec {
				t.Error("the new holder did not record itself")
			}
			m.MarkConsistent()
			if err := m.Unlock(); err != nil {
				t.Fatal(err)
			}
			if m.mu.owner.Load() != 0 || m.mu.word.Load() != 0 {
				t.Errorf("after Unlock: word %#x, record %#x", m.mu.word.Load(), m.mu.owner.Load())
			}
		})
	}
}

// TestMutexCorruptWord writes impossible values into the lock word and
// state: Lock recovers (or errs) within a second, never hangs or panics.
func TestMutexCorruptWord(t *testing.T) {
	// A pid that cannot exist: above the kernel's limit (PID_MAX_LIMIT is 2^22).
	const never = pidMask
	reaped := func(t *testing.T) uint32 {
		cmd := helperproc.Command(t, "exit")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		return uint32(cmd.Process.Pid)
	}
	for _, tc := range []struct {
		name         string
		word         func(t *testing.T) uint32
		owner, state uint64
		want         error
	}{
		{"pid-never-existed", func(*testing.T) uint32 { return never }, 0, 0, ErrOwnerDead},
		{"pid-never-existed-with-record", func(*testing.T) uint32 { return never | waitersBit }, rec(never, 12345), 0, ErrOwnerDead},
		{"all-ones", func(*testing.T) uint32 { return 0xffffffff }, 0, 0, ErrOwnerDead},
		{"waiters-bit-alone", func(*testing.T) uint32 { return waitersBit }, 0, 0, nil},
		{"bit-30-alone", func(*testing.T) uint32 { return 1 << 30 }, 0, 0, nil},
		{"exited-process", reaped, 0, 0, ErrOwnerDead},
		{"record-says-reused-pid", func(*testing.T) uint32 { return 1 }, rec(1, 999), 0, ErrOwnerDead},
		{"state-garbage", func(*testing.T) uint32 { return 0 }, 0, 77, ErrOwnerDead},
		{"everything-garbage", func(*testing.T) uint32 { return 0xdeadbeef }, 0xdeadbeefdeadbeef, 0xdeadbeef, ErrOwnerDead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := heapMutex(t)
			m.mu.word.Store(tc.word(t))
			m.mu.owner.Store(tc.owner)
			m.mu.state.Store(uint32(tc.state))
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			begin := time.Now()
			err := m.LockContext(ctx)
			if d := time.Since(begin); d > time.Second {
				t.Errorf("Lock took %v", d)
			}
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("Lock = %v, want %v", err, tc.want)
			}
			if m.mu.word.Load()&pidMask != self.pid {
				t.Fatalf("word %#x after Lock, want our pid", m.mu.word.Load())
			}
			m.MarkConsistent()
			if err := m.Unlock(); err != nil {
				t.Fatal(err)
			}
			if err := m.Lock(); err != nil {
				t.Fatalf("Lock after repair = %v", err)
			}
			m.Unlock()
			// TryLock recovers the same corruption at once.
			m.mu.word.Store(tc.word(t))
			m.mu.owner.Store(tc.owner)
			m.mu.state.Store(uint32(tc.state))
			if ok, err := m.TryLock(); !ok || (!errors.Is(err, tc.want) && !(tc.want == nil && err == nil)) {
				t.Fatalf("TryLock = %v, %v, want true, %v", ok, err, tc.want)
			}
		})
	}
}

// TestSemaphoreCorrupt corrupts the slot count after attach, a slot, and
// the guard's state: no operation panics or reads out of range, dead or
// impossible holders are reclaimed, and the guard repairs itself.
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
	// Both permits held by a process that cannot exist, with a huge count.
	sl := s.slot(1)
	sl.start.Store(7)
	sl.count.Store(0xffffffff)
	sl.pid.Store(pidMask)
	s.avail.Store(0)
	if !s.TryAcquire() {
		t.Fatal("permits of an impossible holder were not reclaimed")
	}
	if sl.pid.Load() != 0 || s.Value() != 1 {
		t.Fatalf("slot pid %d, value %d after reclaim", sl.pid.Load(), s.Value())
	}
	s.Release()
	// The guard: held by a pid that cannot exist, in a state no code writes.
	s.guard.word.Store(pidMask | waitersBit)
	s.guard.state.Store(0xdead)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := s.Acquire(ctx); err != nil {
		t.Fatalf("Acquire with a dead guard holder = %v", err)
	}
	if s.guard.state.Load() != stateConsistent || s.guard.word.Load() != 0 {
		t.Fatalf("guard not repaired: word %#x state %d", s.guard.word.Load(), s.guard.state.Load())
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
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
			select {
			case err := <-other:
				if !errors.Is(err, ErrBroken) {
					t.Fatalf("waiting party got %v", err)
				}
			case <-time.After(time.Second):
				t.Fatal("waiting party not released")
			}
			if _, err := BarrierAt(seg, 0); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("attach with 0 parties = %v", err)
			}
		})
	}
}

// TestCancelMidWait cancels a context while each type waits in shared
// memory, and checks the call returns ctx.Err() at once and the shared
// state is as it was.
func TestCancelMidWait(t *testing.T) {
	cancelled := func(t *testing.T, wait func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- wait(ctx) }()
		time.Sleep(30 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("wait = %v, want context.Canceled", err)
			}
		case <-time.After(time.Second):
			t.Fatal("cancel did not return within a second")
		}
	}
	t.Run("Mutex", func(t *testing.T) {
		m := newMutex(t)
		m.Lock()
		before := [3]uint64{uint64(m.mu.word.Load() &^ waitersBit), uint64(m.mu.state.Load()), m.mu.owner.Load()}
		cancelled(t, m.LockContext)
		after := [3]uint64{uint64(m.mu.word.Load() &^ waitersBit), uint64(m.mu.state.Load()), m.mu.owner.Load()}
		if before != after {
			t.Fatalf("state %v, was %v", after, before)
		}
		m.Unlock()
	})
	t.Run("Semaphore", func(t *testing.T) {
		s := newSemaphore(t, 1, &SemaphoreOptions{Bounded: true})
		if !s.TryAcquire() {
			t.Fatal("TryAcquire")
		}
		cancelled(t, s.Acquire)
		if s.Value() != 0 || s.sleepers.Load() != 0 || s.slot(0).count.Load() != 1 {
			t.Fatalf("value %d sleepers %d", s.Value(), s.sleepers.Load())
		}
		// Waiting for the guard, held by another goroutine of ours.
		s.guard.word.Store(self.pid)
		cancelled(t, s.Acquire)
		s.guard.unlock()
		if err := s.Release(); err != nil || s.Value() != 1 {
			t.Fatalf("Release = %v, value %d", err, s.Value())
		}
	})
	t.Run("Event", func(t *testing.T) {
		e, _ := NewEvent()
		defer e.Close()
		cancelled(t, e.Wait)
		if e.IsSet() || e.word.Load() != 0 {
			t.Fatalf("word %#x", e.word.Load())
		}
	})
	t.Run("Barrier", func(t *testing.T) {
		// Waiting for the guard: the party has not arrived, nothing breaks.
		b, _ := NewBarrier(2)
		defer b.Close()
		b.guard.word.Store(self.pid)
		cancelled(t, func(ctx context.Context) error { _, err := b.Wait(ctx); return err })
		b.guard.unlock()
		if b.Broken() || b.arrive.Load() != 0 {
			t.Fatalf("broken %v, arrived %d", b.Broken(), b.arrive.Load())
		}
		// Arrived and waiting: giving up breaks it for the others (the
		// issue's rule), and says so with ctx.Err().
		cancelled(t, func(ctx context.Context) error { _, err := b.Wait(ctx); return err })
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
		cancelled(t, m.LockContext)
		cancelled(t, m.RLockContext)
		m2 := make(chan error, 1)
		go func() { m2 <- m.LockContext(t.Context()) }() // in the gate? no: first in flock
		time.Sleep(20 * time.Millisecond)
		cancelled(t, m.LockContext) // waits in the gate behind m2's flock
		if o.rec.dirty.Load() != 1 || o.rec.state.Load() != stateConsistent {
			t.Fatal("record changed")
		}
		o.Unlock()
		if err := <-m2; err != nil {
			t.Fatalf("Lock after the holder unlocked = %v", err)
		}
		m.Unlock()
	})
}

// TestCloseWakesWaiters closes each type while goroutines wait in it: they
// return os.ErrClosed, and every later call fails cleanly (nothing touches
// the unmapped segment).
func TestCloseWakesWaiters(t *testing.T) {
	closing := func(t *testing.T, n int, wait func() error, closeIt func() error) {
		t.Helper()
		done := make(chan error, n)
		for range n {
			go func() { done <- wait() }()
		}
		time.Sleep(30 * time.Millisecond)
		if err := closeIt(); err != nil {
			t.Fatal(err)
		}
		for range n {
			select {
			case err := <-done:
				if !errors.Is(err, os.ErrClosed) {
					t.Fatalf("waiter got %v, want os.ErrClosed", err)
				}
			case <-time.After(time.Second):
				t.Fatal("Close did not wake a waiter within a second")
			}
		}
		if err := closeIt(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
	}
	ctx := context.Background()
	t.Run("Mutex", func(t *testing.T) {
		m, _ := NewMutex()
		m.Lock()
		closing(t, 3, m.Lock, m.Close)
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
		closing(t, 3, func() error { return s.Acquire(ctx) }, s.Close)
		if s.TryAcquire() || s.Value() != 0 || s.Reclaimed() != 0 || !errors.Is(s.Release(), os.ErrClosed) {
			t.Fatal("calls after Close did not fail")
		}
	})
	t.Run("Event", func(t *testing.T) {
		e, _ := NewEvent()
		closing(t, 3, func() error { return e.Wait(ctx) }, e.Close)
		e.Set()
		e.Clear()
		if e.IsSet() || !errors.Is(e.Wait(ctx), os.ErrClosed) {
			t.Fatal("calls after Close did not fail")
		}
	})
	t.Run("Barrier", func(t *testing.T) {
		b, _ := NewBarrier(4)
		closing(t, 2, func() error { _, err := b.Wait(ctx); return err }, b.Close)
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
		closing(t, 3, func() error { return m.LockContext(t.Context()) }, m.Close)
		for _, err := range []error{m.Lock(), m.Unlock(), m.RLock(), m.RUnlock(), m.MarkConsistent()} {
			if !errors.Is(err, os.ErrClosed) {
				t.Fatalf("call after Close = %v", err)
			}
		}
		o.Unlock()
	})
	t.Run("FileMutex-blocking-Lock", func(t *testing.T) {
		// Lock without a context sleeps in flock(2): it returns
		// os.ErrClosed once the other holder lets go, and drops the lock.
		m, _ := NewFileMutex(filepath.Join(t.TempDir(), "lock"))
		o, _ := NewFileMutex(m.Path())
		defer o.Close()
		o.Lock()
		done := make(chan error, 1)
		go func() { done <- m.Lock() }()
		time.Sleep(30 * time.Millisecond)
		m.Close()
		o.Unlock()
		if err := <-done; !errors.Is(err, os.ErrClosed) {
			t.Fatalf("blocked Lock after Close = %v", err)
		}
		if ok, err := o.TryLock(); !ok || err != nil {
			t.Fatalf("lock not released by the closed handle: %v, %v", ok, err)
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
