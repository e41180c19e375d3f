//go:build linux

package semaphore

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
)

func newSemaphore(t testing.TB, n int, opts *SemaphoreOptions) *Semaphore {
	t.Helper()
	s, err := NewSemaphore(n, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSemaphoreBounded(t *testing.T) {
	s := newSemaphore(t, 2, &SemaphoreOptions{Bounded: true})
	for range 2 {
		if !s.TryAcquire() {
			t.Fatal("TryAcquire of a free permit failed")
		}
	}
	if s.TryAcquire() {
		t.Fatal("TryAcquire beyond the value succeeded")
	}
	for range 2 {
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Release(); !errors.Is(err, ErrTooManyReleases) {
		t.Fatalf("Release beyond the bound = %v", err)
	}
	if s.Value() != 2 {
		t.Fatalf("Value %d after a refused Release, want 2", s.Value())
	}
}

func TestSemaphoreUnbounded(t *testing.T) {
	s := newSemaphore(t, 0, nil)
	if s.TryAcquire() {
		t.Fatal("acquired from an empty semaphore")
	}
	s.Release()
	s.Release()
	if s.Value() != 2 {
		t.Fatalf("after two Releases: value %d", s.Value())
	}
	first, second, third := s.TryAcquire(), s.TryAcquire(), s.TryAcquire()
	if !first || !second || third {
		t.Fatalf("TryAcquire x3 = %v %v %v", first, second, third)
	}
}

func TestSemaphoreNamed(t *testing.T) {
	name := helperproc.Name(t)
	s, err := CreateSemaphore(name, 1, &SemaphoreOptions{Bounded: true, Holders: 4, Mode: 0o640})
	if err != nil {
		t.Fatal(err)
	}
	defer shm.Remove(name)
	defer s.Close()
	if fi, err := os.Stat(shm.Path(name)); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("named semaphore's file: %v, %v; want mode 0640", fi, err)
	}
	o, err := OpenSemaphore(name)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if !s.TryAcquire() || o.TryAcquire() {
		t.Fatal("the two handles do not share permits")
	}
	if err := o.Release(); err != nil {
		t.Fatal(err)
	}
	// Corrupt the slot count: attach refuses it.
	u32(s.mem, offSemNSlots).Store(0)
	if _, err := SemaphoreAt(s.seg, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("attach to a corrupt semaphore = %v", err)
	}
	u32(s.mem, offSemNSlots).Store(1 << 20)
	if _, err := SemaphoreAt(s.seg, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("attach to a corrupt semaphore = %v", err)
	}
	if _, err := SemaphoreAt(s.seg, 8); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("attach at a wrong offset = %v", err)
	}
}

// TestSemaphoreOnHeap shows a semaphore of value 2 admitting at most 2
// holders among 6 goroutines at any time, and 2 at once when 2 want in.
func TestSemaphoreOnHeap(t *testing.T) {
	const value, workers, rounds = 2, 6, 2000
	seg, _ := shm.NewHeap(SemaphoreSize(nil))
	s, err := InitSemaphoreAt(seg, 0, value, &SemaphoreOptions{Bounded: true})
	if err != nil {
		t.Fatal(err)
	}
	var inside, peak atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				if err := s.Acquire(t.Context()); err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				inside.Add(-1)
				if err := s.Release(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if peak.Load() > value || s.Value() != value {
		t.Fatalf("peak %d holders, value %d; want at most %d and %d", peak.Load(), s.Value(), value, value)
	}
	// Exactly value holders at once: value goroutines acquire and stay
	// inside until all of them are; a semaphore that admitted fewer at a
	// time would keep the last ones waiting, and one more is refused.
	inside.Store(0)
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for range value {
		wg.Go(func() {
			if err := s.Acquire(ctx); err != nil {
				if ctx.Err() == nil {
					t.Error(err)
				}
				return
			}
			inside.Add(1)
			<-release
			if err := s.Release(); err != nil {
				t.Error(err)
			}
		})
	}
	for deadline := time.Now().Add(slowBound); inside.Load() < value; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			n := inside.Load()
			close(release)
			cancel()
			wg.Wait()
			t.Fatalf("%d holders inside at once after %v, want %d", n, slowBound, value)
		}
	}
	if s.TryAcquire() {
		t.Errorf("a permit past %d holders", value)
		s.Release()
	}
	close(release)
	wg.Wait()
	if s.Value() != value {
		t.Fatalf("value %d after the holders left, want %d", s.Value(), value)
	}
}

func TestSemaphoreContext(t *testing.T) {
	s := newSemaphore(t, 0, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if err := s.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire = %v", err)
	}
	if s.Value() != 0 || s.sleepers.Load() != 0 {
		t.Fatalf("cancelled Acquire left value %d, sleepers %d", s.Value(), s.sleepers.Load())
	}
	s.Release()
	if err := s.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestSemaphoreHolderDies kills a helper holding the only permit while a
// goroutine sleeps in Acquire: the permit comes back with ErrOwnerDead.
func TestSemaphoreHolderDies(t *testing.T) {
	s := newSemaphore(t, 1, &SemaphoreOptions{Bounded: true})
	cmd := startUntil(t, "hold", holdArgs{S: s}, "holding")
	if s.TryAcquire() {
		t.Fatal("acquired a permit a live helper holds")
	}
	done := make(chan error)
	go func() { done <- s.Acquire(t.Context()) }()
	asleepIn(t, 1, "(*Semaphore).Acquire")
	killed := time.Now()
	helperproc.Kill(cmd)
	err := <-done
	if d := time.Since(killed); d > slowBound {
		t.Errorf("permit came back after %v", d)
	}
	if !errors.Is(err, ErrOwnerDead) || s.Reclaimed() != 1 {
		t.Fatalf("Acquire = %v, reclaimed %d; want ErrOwnerDead, 1", err, s.Reclaimed())
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(); !errors.Is(err, ErrTooManyReleases) {
		t.Fatalf("Release of the dead holder's permit = %v", err)
	}
}

func TestSemaphoreTooManyHolders(t *testing.T) {
	s := newSemaphore(t, 2, &SemaphoreOptions{Holders: 1})
	startUntil(t, "hold", holdArgs{S: s}, "holding")
	if err := s.Acquire(t.Context()); !errors.Is(err, ErrTooManyHolders) {
		t.Fatalf("Acquire with a full table = %v", err)
	}
	if s.Value() != 1 {
		t.Fatalf("value %d, want 1", s.Value())
	}
}
