//go:build linux

package futex_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
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
		limit := time.Second
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

func TestWaitContextCancel(t *testing.T) {
	var w uint32
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	for {
		err := futex.WaitContext(ctx, &w, 0, futex.Forever)
		if errors.Is(err, context.Canceled) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancel took %v", d)
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
