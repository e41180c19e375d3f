//go:build linux

package semaphore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
)

type lockedArgs struct {
	L *Locked[int32]
	N int
	// The start line: Procs processes wait until Ready counts them all.
	Ready *shm.Int64
	Procs int
}

func init() {
	// lockedadd: N racy increments of element 0, each inside Do.
	helperproc.Register("lockedadd", func(args []string) error {
		var a lockedArgs
		if err := receive(args, &a); err != nil {
			return err
		}
		defer a.L.Close()
		defer a.Ready.Close()
		if err := startLine(a.Ready, a.Procs); err != nil {
			return err
		}
		return lockedAdd(context.Background(), a.L, a.N)
	})
	// lockedhold: lock the Locked's Mutex and wait to be killed.
	helperproc.Register("lockedhold", func(args []string) error {
		var a lockedArgs
		if err := receive(args, &a); err != nil {
			return err
		}
		if err := a.L.Mutex().Lock(); err != nil {
			return err
		}
		fmt.Println("holding")
		time.Sleep(time.Minute)
		return nil
	})
}

// startLine counts this process in at ready and waits until procs are.
func startLine(ready *shm.Int64, procs int) error {
	ready.Add(1)
	for deadline := time.Now().Add(time.Minute); ready.Load() < int64(procs); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d processes at the start line after a minute", ready.Load(), procs)
		}
	}
	return nil
}

// lockedAdd does n read-modify-writes of element 0 (a Load, then a
// Store: lost without the lock) inside l.Do, each holding the value read
// for a few microseconds (yielding to other goroutines meanwhile), so that
// unlocked ones would overlap.
func lockedAdd(ctx context.Context, l *Locked[int32], n int) error {
	a := l.Array()
	for range n {
		if err := l.Do(ctx, func() error {
			v := a.Load(0)
			for start := time.Now(); time.Since(start) < 5*time.Microsecond; {
				runtime.Gosched()
			}
			a.Store(0, v+1)
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// TestLockedGoroutines: Python's `with v.get_lock(): v.value += 1` from
// goroutines loses nothing. On the heap.
func TestLockedGoroutines(t *testing.T) {
	seg, _ := shm.NewHeap(LockedSize(1, 4))
	l, err := InitLockedAt[int32](seg, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := lockedAdd(t.Context(), l, 500); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := l.Array().Load(0); got != 2000 {
		t.Fatalf("counter %d, want 2000: the lock did not guard the value", got)
	}
}

// TestLockedAcrossProcesses: the same across two child processes and
// this one; the children get the Locked in their argument.
func TestLockedAcrossProcesses(t *testing.T) {
	l, err := NewLocked[int32](1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ready, err := shm.NewInt64()
	if err != nil {
		t.Fatal(err)
	}
	defer ready.Close()
	const n = 1000
	var wg sync.WaitGroup
	for range 2 {
		cmd := start(t, "lockedadd", lockedArgs{L: l, N: n, Ready: ready, Procs: 3})
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := cmd.Wait(); err != nil {
				t.Error(err)
			}
		})
	}
	err = startLine(ready, 3)
	if err == nil {
		err = lockedAdd(t.Context(), l, n)
	}
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Array().Load(0); got != 3*n {
		t.Fatalf("counter %d, want %d", got, 3*n)
	}
}

// TestLockedHolderDies: a child that got the Locked in its argument is
// killed holding its Mutex: DoRepair here repairs (the Mutex is the one in
// the Locked's segment), then runs.
func TestLockedHolderDies(t *testing.T) {
	l, err := NewLocked[int32](4)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	helperproc.Kill(startUntil(t, "lockedhold", lockedArgs{L: l}, "holding"))
	if err := l.DoRepair(t.Context(), func() error { l.Array().Store(3, -1); return nil }, func() error { return nil }); err != nil {
		t.Fatalf("DoRepair after the holder died = %v", err)
	}
	if l.Array().Load(3) != -1 {
		t.Fatal("repair did not run")
	}
}

// TestLockedOpen: a named Locked opens with its own element type only;
// an element kind or a length that cannot be is ErrCorrupt.
func TestLockedOpen(t *testing.T) {
	name := helperproc.Name(t)
	l, err := CreateLocked[float64](name, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shm.Remove(name)
	defer l.Close()
	if _, err := OpenLocked[int64](name); !errors.Is(err, shm.ErrKind) {
		t.Fatalf("OpenLocked[int64] of a float64 array = %v, want shm.ErrKind", err)
	}
	o, err := OpenLocked[float64](name)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	l.Array().Store(2, 1.5)
	if o.Array().Len() != 3 || o.Array().Load(2) != 1.5 {
		t.Fatal("a second handle does not see the first one's array")
	}
	if _, err := NewLocked[int8](0); !errors.Is(err, os.ErrInvalid) {
		t.Fatalf("NewLocked(0) = %v, want os.ErrInvalid", err)
	}
	seg, _ := shm.NewHeap(LockedSize(2, 8))
	if _, err := LockedAt[int64](seg, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("LockedAt of zeroed memory = %v, want ErrCorrupt", err)
	}
	if _, err := InitLockedAt[int64](seg, 0, 2); err != nil {
		t.Fatal(err)
	}
	u32(seg.Bytes(), offLockedLen).Store(3)
	if _, err := LockedAt[int64](seg, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("LockedAt with a length past the segment = %v, want ErrCorrupt", err)
	}
}
