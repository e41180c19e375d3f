//go:build linux

package semaphore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
)

// TestMutexDo: Do excludes goroutines like Lock and Unlock, returns fn's
// error, and unlocks after it. On the heap, under the race detector.
func TestMutexDo(t *testing.T) {
	seg, _ := shm.NewHeap(MutexSize)
	m, err := MutexAt(seg, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				if err := m.Do(t.Context(), func() error { n++; return nil }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n != 4000 {
		t.Fatalf("n = %d, want 4000: Do did not exclude", n)
	}
	oops := errors.New("oops")
	if err := m.Do(t.Context(), func() error { return oops }); !errors.Is(err, oops) {
		t.Fatalf("Do = %v, want fn's error", err)
	}
	if ok, err := m.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock after Do = %v, %v: Do left the Mutex locked", ok, err)
	}
	m.Unlock()
}

// TestMutexDoContext: Do gives up on ctx while a live process holds the
// Mutex, without running fn.
func TestMutexDoContext(t *testing.T) {
	m, err := NewMutex()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h := helperproc.Start(t, start(t, "hold", holdArgs{M: m}))
	h.Expect(t, "holding")
	defer h.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	ran := false
	if err := m.Do(ctx, func() error { ran = true; return nil }); !errors.Is(err, context.DeadlineExceeded) || ran {
		t.Fatalf("Do while a live process holds it = %v (ran %v), want DeadlineExceeded, not run", err, ran)
	}
}

// TestMutexDoOwnerDead kills a holder: Do runs nothing and leaves the
// Mutex not recoverable; DoRepair repairs, marks it consistent and runs
// fn; a failing repair is reported with ErrOwnerDead.
func TestMutexDoOwnerDead(t *testing.T) {
	killHolder := func(t *testing.T) *Mutex {
		m, err := NewMutex()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		helperproc.Kill(startUntil(t, "hold", holdArgs{M: m}, "holding"))
		return m
	}
	t.Run("Do", func(t *testing.T) {
		m := killHolder(t)
		ran := false
		if err := m.Do(t.Context(), func() error { ran = true; return nil }); !errors.Is(err, ErrOwnerDead) || ran {
			t.Fatalf("Do after the holder died = %v (ran %v), want ErrOwnerDead, not run", err, ran)
		}
		if err := m.Lock(); !errors.Is(err, ErrNotRecoverable) {
			t.Fatalf("Lock after Do refused unrepaired data = %v, want ErrNotRecoverable", err)
		}
	})
	t.Run("DoRepair", func(t *testing.T) {
		m := killHolder(t)
		var steps []string
		err := m.DoRepair(t.Context(),
			func() error { steps = append(steps, "repair"); return nil },
			func() error { steps = append(steps, "fn"); return nil })
		if err != nil || len(steps) != 2 || steps[0] != "repair" || steps[1] != "fn" {
			t.Fatalf("DoRepair = %v, steps %v; want nil, [repair fn]", err, steps)
		}
		if err := m.Lock(); err != nil {
			t.Fatalf("Lock after DoRepair = %v, want nil (consistent)", err)
		}
		m.Unlock()
		// No death: repair is not called.
		if err := m.DoRepair(t.Context(), func() error { t.Error("repair without a death"); return nil }, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("RepairFails", func(t *testing.T) {
		m := killHolder(t)
		bad := errors.New("cannot repair")
		ran := false
		err := m.DoRepair(t.Context(), func() error { return bad }, func() error { ran = true; return nil })
		if !errors.Is(err, bad) || !errors.Is(err, ErrOwnerDead) || ran {
			t.Fatalf("DoRepair with a failing repair = %v (ran %v), want the repair's error and ErrOwnerDead", err, ran)
		}
		if err := m.Lock(); !errors.Is(err, ErrNotRecoverable) {
			t.Fatalf("Lock after a failed repair = %v, want ErrNotRecoverable", err)
		}
	})
}

// TestFileMutexDo: Do on a FileMutex whose holder died runs nothing and
// reports ErrOwnerDead; DoRepair then cannot help (not recoverable), and a
// fresh lock runs fn.
func TestFileMutexDo(t *testing.T) {
	m := newFileMutex(t)
	n := 0
	if err := m.Do(t.Context(), func() error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("Do = %v, n %d", err, n)
	}
	helperproc.Kill(startUntil(t, "hold", holdArgs{F: m}, "holding"))
	if err := m.Do(t.Context(), func() error { n++; return nil }); !errors.Is(err, ErrOwnerDead) || n != 1 {
		t.Fatalf("Do after the holder died = %v, n %d; want ErrOwnerDead, not run", err, n)
	}
	if err := m.Lock(); !errors.Is(err, ErrNotRecoverable) {
		t.Fatalf("Lock = %v, want ErrNotRecoverable", err)
	}
}

// TestMutexDoPanic: a panic in fn goes on to Do's caller with the Mutex
// unlocked, as Python's `with` releases on an exception.
func TestMutexDoPanic(t *testing.T) {
	seg, _ := shm.NewHeap(MutexSize)
	m, err := MutexAt(seg, 0)
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want fn's panic", r)
			}
		}()
		m.Do(t.Context(), func() error { panic("boom") })
	}()
	if ok, err := m.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock after fn panicked = %v, %v: Do left the Mutex locked", ok, err)
	}
	m.Unlock()
}
