//go:build linux

package semaphore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ipckit/ipckit/shm"
)

// TestEventOnHeap releases every waiter asleep at a Set, even when Clear
// follows at once.
func TestEventOnHeap(t *testing.T) {
	seg, _ := shm.NewHeap(EventSize)
	e, err := EventAt(seg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if e.IsSet() {
		t.Fatal("zero Event is set")
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := e.Wait(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	// All four asleep on the clear word: a goroutine that started late
	// (a loaded machine) would load the word after Set and Clear, and
	// rightly wait for the next Set.
	asleepIn(t, 4, "semaphore.(*Event).Wait")
	e.Set()
	e.Clear() // at once: the waiters that were there are released anyway
	wg.Wait()
	if e.IsSet() {
		t.Fatal("Clear did not clear")
	}
	e.Set()
	if !e.IsSet() || e.Wait(t.Context()) != nil {
		t.Fatal("Set did not set")
	}
}

// TestEventContext shows a Wait on a clear Event ending at its deadline
// with the Event unchanged.
func TestEventContext(t *testing.T) {
	e, err := NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if err := e.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v", err)
	}
	if e.IsSet() {
		t.Fatal("state changed")
	}
}

// TestEventAcrossProcesses shows that a helper process does not pass a
// clear Event and passes it once it is set.
func TestEventAcrossProcesses(t *testing.T) {
	e, err := NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	v, _ := shm.NewInt64()
	defer v.Close()
	// The helper shows first that a Wait on the clear event runs into its
	// deadline, then says "waiting" and waits for the Set.
	cmd := startUntil(t, "hold", holdArgs{E: e, Int: v}, "waiting")
	if v.Load() != 0 {
		t.Fatal("helper passed a clear event")
	}
	e.Set()
	if err := cmd.Wait(); err != nil || v.Load() != 1 {
		t.Fatalf("helper: %v, counted %d", err, v.Load())
	}
}
