//go:build linux

package semaphore

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
)

const rmwPerProcess = 100_000

func newMutex(t testing.TB) *Mutex {
	t.Helper()
	m, err := NewMutex()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func heapMutex(t testing.TB) *Mutex {
	t.Helper()
	seg, err := shm.NewHeap(64)
	if err != nil {
		t.Fatal(err)
	}
	m, err := MutexAt(seg, 8)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMutexAcrossProcesses shows mutual exclusion between processes: 2
// and 4 processes, started together, make unlocked read-modify-writes of
// one shared counter inside the Mutex, overlapping (each sees the others'
// updates between its own), and no update is lost.
func TestMutexAcrossProcesses(t *testing.T) {
	for _, procs := range []int{2, 4} {
		t.Run(strconv.Itoa(procs), func(t *testing.T) {
			m := newMutex(t)
			countTogether(t, procs, counterArgs{M: m}, m)
		})
	}
}

func TestMutexNamed(t *testing.T) {
	name := helperproc.Name(t)
	m, err := CreateMutex(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shm.Remove(name)
	defer m.Close()
	o, err := OpenMutex(name)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := m.Lock(); err != nil {
		t.Fatal(err)
	}
	if ok, err := o.TryLock(); ok || err != nil {
		t.Fatalf("TryLock of a held lock = %v, %v", ok, err)
	}
	if err := o.Unlock(); err != nil { // same process: allowed, like sync.Mutex
		t.Fatal(err)
	}
	if ok, err := o.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock of a free lock = %v, %v", ok, err)
	}
	o.Unlock()
	if _, err := OpenSemaphore(name); !errors.Is(err, shm.ErrKind) {
		t.Fatalf("OpenSemaphore of a mutex = %v, want ErrKind", err)
	}
}

func TestMutexOnHeap(t *testing.T) {
	m := heapMutex(t)
	seg, _ := shm.NewHeap(8)
	v, _ := shm.Int64At(seg, 0)
	plain := 0 // not atomic: the race detector checks the Mutex's ordering
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range rmwPerProcess / 4 {
				if err := m.Lock(); err != nil {
					t.Error(err)
					return
				}
				v.Store(v.Load() + 1)
				plain++
				if err := m.Unlock(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := v.Load(); got != rmwPerProcess || plain != rmwPerProcess {
		t.Fatalf("total %d and %d, want %d", got, plain, rmwPerProcess)
	}
}

func TestMutexMisuse(t *testing.T) {
	m := newMutex(t)
	if err := m.Unlock(); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("Unlock of unlocked = %v", err)
	}
	m.Lock()
	m.Unlock()
	if err := m.Unlock(); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("double Unlock = %v", err)
	}
	if err := m.MarkConsistent(); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("MarkConsistent unlocked = %v", err)
	}
	// A lock held by another process, alive: a helper.
	h := startUntil(t, "hold", holdArgs{M: m}, "holding")
	defer helperproc.Kill(h)
	held := lockWord(m.mem).Load()
	if err := m.Unlock(); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("Unlock of another's lock = %v", err)
	}
	if err := m.MarkConsistent(); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("MarkConsistent of another's lock = %v", err)
	}
	if ok, err := m.TryLock(); ok || err != nil {
		t.Fatalf("TryLock of a live helper's lock = %v, %v (a live holder was robbed)", ok, err)
	}
	if lockWord(m.mem).Load() != held {
		t.Fatal("lock word changed")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.LockContext(t.Context()); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Lock after Close = %v", err)
	}
}

// TestMutexContext shows LockContext giving up at its deadline, and on a
// cancel while it sleeps, with the lock left as it was.
func TestMutexContext(t *testing.T) {
	m := heapMutex(t)
	m.Lock()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if err := m.LockContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LockContext = %v", err)
	}
	if d := time.Since(begin); d > slowBound {
		t.Fatalf("cancel took %v", d)
	}
	if h, inc := m.lock.Holder(); h != self() || inc {
		t.Fatal("state changed by a cancelled Lock")
	}
	// Cancel mid-wait from another goroutine: the waiter (its holder is
	// its own process: no slow check) sleeps until the cancel wakes it.
	ctx, cancel = context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.LockContext(ctx) }()
	asleepIn(t, 1, "(*Mutex).LockContext")
	cancel()
	if err := within(t, done, "the cancelled LockContext"); !errors.Is(err, context.Canceled) {
		t.Fatalf("LockContext = %v", err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(); err != nil {
		t.Fatal(err)
	}
}

// TestMutexCloseWakesWaiters closes a Mutex while a goroutine sleeps in
// LockContext behind its own process (no slow check): only Close's wake-up
// ends the sleep.
func TestMutexCloseWakesWaiters(t *testing.T) {
	m := newMutex(t)
	m.Lock()
	done := make(chan error, 1)
	go func() { done <- m.LockContext(context.Background()) }()
	asleepIn(t, 1, "(*Mutex).LockContext")
	go m.Close()
	if err := within(t, done, "a waiter after Close"); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("waiter got %v, want ErrClosed", err)
	}
}

// TestMutexOwnerDies kills a helper holding the Mutex while three
// goroutines sleep behind it: exactly one is told ErrOwnerDead, promptly.
func TestMutexOwnerDies(t *testing.T) {
	m := newMutex(t)
	cmd := startUntil(t, "hold", holdArgs{M: m}, "holding")
	waiters := 3
	type result struct {
		err error
		d   time.Duration
	}
	results := make(chan result, waiters)
	var killed time.Time
	var mu sync.Mutex
	for range waiters {
		go func() {
			err := m.LockContext(t.Context())
			mu.Lock()
			d := time.Since(killed)
			mu.Unlock()
			if err == nil || errors.Is(err, ErrOwnerDead) {
				m.MarkConsistent()
				m.Unlock()
			}
			results <- result{err, d}
		}()
	}
	asleepIn(t, waiters, "(*Mutex).LockContext")
	if ok, err := m.TryLock(); ok || err != nil {
		t.Fatalf("TryLock while a live helper holds it = %v, %v", ok, err)
	}
	mu.Lock()
	killed = time.Now()
	mu.Unlock()
	helperproc.Kill(cmd)
	dead := 0
	for range waiters {
		r := <-results
		switch {
		case errors.Is(r.err, ErrOwnerDead):
			dead++
			if r.d > slowBound {
				t.Errorf("lock handed on after %v", r.d)
			}
		case r.err != nil:
			t.Errorf("waiter: %v", r.err)
		}
	}
	if dead != 1 {
		t.Fatalf("%d waiters were told the owner died, want 1", dead)
	}
	if err := m.Lock(); err != nil {
		t.Fatalf("Lock after recovery = %v", err)
	}
	m.Unlock()
}

func TestMutexNotRecoverable(t *testing.T) {
	m := newMutex(t)
	helperproc.Kill(startUntil(t, "hold", holdArgs{M: m}, "holding"))
	if ok, err := m.TryLock(); !ok || !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("TryLock after owner death = %v, %v", ok, err)
	}
	// Unlock without MarkConsistent: nobody repaired the data.
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(); !errors.Is(err, ErrNotRecoverable) {
		t.Fatalf("Lock = %v, want ErrNotRecoverable", err)
	}
	if ok, err := m.TryLock(); ok || !errors.Is(err, ErrNotRecoverable) {
		t.Fatalf("TryLock = %v, %v, want ErrNotRecoverable", ok, err)
	}
}

func TestMutexInconsistentStays(t *testing.T) {
	// A new holder that dies before MarkConsistent passes ErrOwnerDead on.
	m := newMutex(t)
	helperproc.Kill(startUntil(t, "hold", holdArgs{M: m}, "holding"))
	// The second helper gets ErrOwnerDead, holds the lock and dies too.
	helperproc.Kill(startUntil(t, "hold", holdArgs{M: m}, "holding"))
	if ok, err := m.TryLock(); !ok || !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("TryLock after two deaths = %v, %v", ok, err)
	}
	if err := m.MarkConsistent(); err != nil {
		t.Fatal(err)
	}
	m.Unlock()
	if err := m.Lock(); err != nil {
		t.Fatalf("Lock after MarkConsistent = %v", err)
	}
}
