//go:build linux

package semaphore

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
)

func newFileMutex(t testing.TB) *FileMutex {
	t.Helper()
	m, err := NewFileMutex(filepath.Join(t.TempDir(), "lock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestFileMutexAcrossProcesses is TestMutexAcrossProcesses for a
// FileMutex, with 3 processes.
func TestFileMutexAcrossProcesses(t *testing.T) {
	m := newFileMutex(t)
	countTogether(t, 3, counterArgs{F: m}, m)
}

func TestFileMutexGoroutines(t *testing.T) {
	m := newFileMutex(t)
	plain, readers := 0, 0
	var rmu sync.Mutex
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				if err := m.Lock(); err != nil {
					t.Error(err)
					return
				}
				plain++
				m.Unlock()
			}
		})
		wg.Go(func() {
			for range 500 {
				if err := m.LockShared(); err != nil {
					t.Error(err)
					return
				}
				rmu.Lock()
				readers++
				rmu.Unlock()
				_ = plain // read under the shared lock
				m.UnlockShared()
			}
		})
	}
	wg.Wait()
	if plain != 8000 || readers != 2000 {
		t.Fatalf("plain %d readers %d", plain, readers)
	}
}

func TestFileMutexMisuse(t *testing.T) {
	m := newFileMutex(t)
	if err := m.Unlock(); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("Unlock = %v", err)
	}
	if err := m.UnlockShared(); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("UnlockShared = %v", err)
	}
	if err := m.LockShared(); err != nil {
		t.Fatal(err)
	}
	if ok, err := m.TryLock(); ok || err != nil {
		t.Fatalf("TryLock under a reader = %v, %v", ok, err)
	}
	o, err := NewFileMutex(m.Path()) // another open file: like another process
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.LockShared(); err != nil {
		t.Fatalf("second reader: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if err := o.LockContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LockContext under a reader = %v", err)
	}
	o.UnlockShared()
	m.UnlockShared()
	if err := o.Lock(); err != nil {
		t.Fatal(err)
	}
	if err := o.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := o.Unlock(); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("double Unlock = %v", err)
	}
	m.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFileMutexRefuses(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "data")
	os.WriteFile(other, []byte("not a lock file"), 0o600)
	if _, err := NewFileMutex(other); !errors.Is(err, os.ErrInvalid) {
		t.Fatalf("NewFileMutex of a data file = %v", err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "target"), link)
	if m, err := NewFileMutex(link); err == nil {
		m.Close()
		t.Fatal("NewFileMutex followed a symbolic link")
	}
	var old [fileRecSize]byte
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, make([]byte, fileRecSize), 0o600)
	f, _ := os.OpenFile(bad, os.O_RDWR, 0)
	f.WriteAt([]byte{1, 2, 3, 4}, 0)
	f.Close()
	if _, err := NewFileMutex(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("NewFileMutex with a bad magic = %v", err)
	}
	// A lock file of the pid layout (before liveness tokens).
	binary.LittleEndian.PutUint32(old[:], fileMagicPid)
	os.WriteFile(bad, old[:], 0o600)
	if _, err := NewFileMutex(bad); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "older layout") {
		t.Fatalf("NewFileMutex of the pid layout = %v", err)
	}
}

// TestFileMutexOwnerDies kills a helper holding the FileMutex while a
// goroutine sleeps behind it: the sleeper gets ErrOwnerDead, and unlocking
// without repair makes the lock unrecoverable.
func TestFileMutexOwnerDies(t *testing.T) {
	m := newFileMutex(t)
	cmd := startUntil(t, "hold", holdArgs{F: m}, "holding")
	if ok, err := m.TryLock(); ok || err != nil {
		t.Fatalf("TryLock while a live helper holds it = %v, %v", ok, err)
	}
	done := make(chan error)
	go func() { done <- m.LockContext(t.Context()) }()
	asleepIn(t, 1, "(*FileMutex).LockContext")
	killed := time.Now()
	helperproc.Kill(cmd)
	if err := <-done; !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("Lock after the holder died = %v", err)
	}
	if d := time.Since(killed); d > slowBound {
		t.Fatalf("handed on after %v", d)
	}
	// Unlock without repair: unrecoverable, for readers too.
	m.Unlock()
	if err := m.Lock(); !errors.Is(err, ErrNotRecoverable) {
		t.Fatalf("Lock = %v, want ErrNotRecoverable", err)
	}
	if err := m.LockShared(); !errors.Is(err, ErrNotRecoverable) {
		t.Fatalf("LockShared = %v, want ErrNotRecoverable", err)
	}
}

func TestFileMutexMarkConsistent(t *testing.T) {
	m := newFileMutex(t)
	helperproc.Kill(startUntil(t, "hold", holdArgs{F: m}, "holding"))
	if err := m.LockShared(); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("LockShared after the holder died = %v", err)
	}
	m.UnlockShared()
	if ok, err := m.TryLock(); !ok || !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	if err := m.MarkConsistent(); err != nil {
		t.Fatal(err)
	}
	m.Unlock()
	if err := m.Lock(); err != nil {
		t.Fatalf("Lock after repair = %v", err)
	}
	m.Unlock()
}
