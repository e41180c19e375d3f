//go:build linux

package futex_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
)

const rounds = 2000

// pingPong plays its side of a turn-taking game on the word at the start of
// a shared segment: the parent moves the word from even to odd, the child
// from odd to even, and each sleeps on the futex while it is not its turn.
// A sleep longer than a second is a lost wake-up, except in the first turn,
// which also waits for the other process to start (a race-built binary on a
// loaded machine can take longer than that).
func pingPong(word *atomic.Uint32, odd uint32, n int) error {
	addr := (*uint32)(unsafe.Pointer(word))
	for i := range n {
		// A lost wake-up sleeps for ever; a turn only waits for the other
		// process to be scheduled, which on a loaded machine (load average
		// 15 on 2 cores, race-built binaries) took over a second. So each
		// turn gets 10 s, and the first a minute (it waits for a race-built
		// child to start too).
		limit := 10 * time.Second
		if i == 0 {
			limit = time.Minute
		}
		for {
			v := word.Load()
			if v%2 == odd {
				word.Store(v + 1)
				if _, err := futex.Wake(addr, 1); err != nil {
					return err
				}
				break
			}
			if err := futex.Wait(addr, v, limit); err != nil {
				return err
			}
		}
	}
	return nil
}

func sharedWord(seg *shm.Segment) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&seg.Bytes()[0]))
}

func TestMain(m *testing.M) {
	helperproc.Register("pong", func(args []string) error {
		seg, err := shm.Open(args[0])
		if err != nil {
			return err
		}
		defer seg.Close()
		n, _ := strconv.Atoi(args[1])
		return pingPong(sharedWord(seg), 1, n)
	})
	helperproc.Run(m)
}

// TestAcrossProcesses plays turns between two processes on a shared word.
func TestAcrossProcesses(t *testing.T) {
	name := helperproc.Name(t)
	seg, err := shm.Create(name, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shm.Remove(name)
	defer seg.Close()
	cmd := helperproc.Command(t, "pong", name, strconv.Itoa(rounds))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := pingPong(sharedWord(seg), 0, rounds); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := sharedWord(seg).Load(); got != 2*rounds {
		t.Fatalf("word = %d, want %d", got, 2*rounds)
	}
}

func TestWaitValueChanged(t *testing.T) {
	var w uint32 = 1
	start := time.Now()
	if err := futex.Wait(&w, 0, time.Second); err != nil {
		t.Fatalf("Wait on a changed value = %v, want nil", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("Wait on a changed value slept %v", d)
	}
}

func TestWaitTimeout(t *testing.T) {
	var w uint32
	start := time.Now()
	if err := futex.Wait(&w, 0, 30*time.Millisecond); !errors.Is(err, futex.ErrTimeout) {
		t.Fatalf("Wait = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("Wait returned after %v, before its timeout", d)
	}
}

// TestWaitContextCancel shows that cancelling a WaitContext wakes the
// waiters on its word: a plain Wait on the same word, asleep before the
// cancel and with nobody else to wake it, returns nil (woken), not
// ErrTimeout. Without the wake-on-cancel the other waiter sleeps on, while
// WaitContext itself still returns context.Canceled at the end of its
// 20 ms slice, which is why the test watches the other waiter, not the
// time.
//
// A cancel counts only if it came while the WaitContext call that is seen
// asleep was still in its first slice (within cancelSlice of its start):
// a cancel after the slice ended finds the wake-up unregistered, rightly.
// A loaded machine that makes the cancel later just plays the scene again.
func TestWaitContextCancel(t *testing.T) {
	const cancelSlice = 20 * time.Millisecond // futex.WaitContext's slice
	var w uint32
	other := make(chan error, 1)
	tid := make(chan int, 1)
	go onThread(tid, func() { other <- futex.Wait(&w, 0, time.Minute) })
	asleepOn(t, <-tid, &w)
	// However the test ends, the other waiter leaves.
	t.Cleanup(func() { futex.Wake(&w, 0) })
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithCancel(t.Context())
		var began time.Time
		result := make(chan error, 1)
		go onThread(tid, func() {
			began = time.Now()
			result <- futex.WaitContext(ctx, &w, 0, futex.Forever)
		})
		asleepOn(t, <-tid, &w)
		cancelled := time.Now()
		cancel()
		err := <-result
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitContext = %v", err)
		}
		if cancelled.Sub(began) < cancelSlice/2 {
			break
		}
		if attempt == 100 {
			t.Skipf("in %d attempts no cancel came within %v of its WaitContext call: the machine is too loaded", attempt, cancelSlice/2)
		}
	}
	select {
	case err := <-other:
		if err != nil {
			t.Fatalf("the other waiter: Wait = %v, want nil (woken by the cancel)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling a WaitContext did not wake the other waiter on its word")
	}
	// And a cancellable wait without a limit returns on cancel.
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(time.Millisecond, cancel)
	for {
		err := futex.WaitContext(ctx, &w, 0, futex.Forever)
		if errors.Is(err, context.Canceled) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// onThread sends the id of the thread it runs f on, locked to it, to tid,
// then runs f.
func onThread(tid chan<- int, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid <- syscall.Gettid()
	f()
}

// asleepOn waits until the thread tid of this process sleeps in a futex
// system call on addr, as /proc/self/task/tid/syscall shows it (number,
// then the first argument in hex). It skips the test if that file cannot
// be read, and fails it after a minute.
func asleepOn(t *testing.T, tid int, addr *uint32) {
	t.Helper()
	want := fmt.Sprintf("%d %#x ", syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)))
	path := fmt.Sprintf("/proc/self/task/%d/syscall", tid)
	for deadline := time.Now().Add(time.Minute); ; runtime.Gosched() {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Skip("cannot see whether a thread sleeps:", err)
		}
		if strings.HasPrefix(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d not asleep on the word: %s", tid, b)
		}
	}
}

func TestWakeCount(t *testing.T) {
	var w uint32
	done := make(chan error)
	go func() { done <- futex.Wait(&w, 0, 5*time.Second) }()
	// The waiter may not be asleep yet: wake until it is.
	for {
		n, err := futex.Wake(&w, 1)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
