//go:build linux

package semaphore

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/robust"
)

// startIn is startUntil with the helper run in a PID namespace of its own
// (helperproc.InPIDNamespace).
func startIn(t *testing.T, name string, v any, line string) *exec.Cmd {
	t.Helper()
	h := helperproc.Start(t, helperproc.InPIDNamespace(t, start(t, name, v)))
	h.Expect(t, line)
	return h.Cmd
}

// TestPIDNamespace: a process in its own PID namespace (a container that
// shares /dev/shm but not its pids) holds a Mutex, a Semaphore's permit, a
// FileMutex, a place at a Barrier. From outside it is alive: TryLock says
// busy, a LockContext that outlasts a slow liveness check times out, its
// permit is not reclaimed, the Barrier is not broken. Once it is killed,
// all of them are taken over (issue 14's reproduction took the Mutex from
// a live holder with ErrOwnerDead).
func TestPIDNamespace(t *testing.T) {
	helperproc.NeedUnshare(t)
	wait := robust.CheckPeriod + robust.CheckPeriod/2 // spans a slow check
	deadline := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		t.Cleanup(cancel)
		return ctx
	}
	t.Run("Mutex", func(t *testing.T) {
		m := newMutex(t)
		cmd := startIn(t, "hold", holdArgs{M: m}, "holding")
		held := lockWord(m.mem).Load()
		if ok, err := m.TryLock(); ok || err != nil {
			t.Fatalf("TryLock on a live holder in another PID namespace = %v, %v; want false, nil", ok, err)
		}
		if err := m.LockContext(deadline(t)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("LockContext on a live holder in another PID namespace = %v, want DeadlineExceeded", err)
		}
		if lockWord(m.mem).Load() != held {
			t.Fatal("the lock word changed")
		}
		helperproc.Kill(cmd) // unshare: --kill-child takes the namespace's pid 1 with it
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := m.LockContext(ctx); !errors.Is(err, ErrOwnerDead) {
			t.Fatalf("LockContext after the holder died = %v, want ErrOwnerDead", err)
		}
		m.MarkConsistent()
		m.Unlock()
	})
	t.Run("Semaphore", func(t *testing.T) {
		s := newSemaphore(t, 1, nil)
		cmd := startIn(t, "hold", holdArgs{S: s}, "holding")
		if s.TryAcquire() {
			t.Fatal("TryAcquire took the permit of a live holder in another PID namespace")
		}
		if err := s.Acquire(deadline(t)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Acquire = %v, want DeadlineExceeded", err)
		}
		if s.Reclaimed() != 0 || s.Value() != 0 {
			t.Fatalf("reclaimed %d, value %d: the live holder's permit was reclaimed", s.Reclaimed(), s.Value())
		}
		helperproc.Kill(cmd)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := s.Acquire(ctx); !errors.Is(err, ErrOwnerDead) || s.Reclaimed() != 1 {
			t.Fatalf("Acquire after the holder died = %v, reclaimed %d", err, s.Reclaimed())
		}
	})
	t.Run("Barrier", func(t *testing.T) {
		b, cmd := barrierWithParty(t, startIn)
		defer helperproc.Kill(cmd)
		// A live party: the wait times out (and breaks the barrier, as a
		// party giving up does), it is not told of a death.
		if _, err := b.Wait(deadline(t)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait with a live party in another PID namespace = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("FileMutex", func(t *testing.T) {
		m := newFileMutex(t)
		cmd := startIn(t, "hold", holdArgs{F: m}, "holding")
		if ok, err := m.TryLock(); ok || err != nil {
			t.Fatalf("TryLock = %v, %v", ok, err)
		}
		if err := m.LockContext(deadline(t)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("LockContext = %v, want DeadlineExceeded", err)
		}
		done := make(chan error, 1)
		go func() { done <- m.Lock() }()
		asleepIn(t, 1, "(*FileMutex).Lock")
		killed := time.Now()
		helperproc.Kill(cmd)
		if err := <-done; !errors.Is(err, ErrOwnerDead) {
			t.Fatalf("Lock after the holder died = %v", err)
		}
		t.Logf("taken over %v after the kill", time.Since(killed))
		m.MarkConsistent()
		m.Unlock()
	})
}
