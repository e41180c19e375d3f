//go:build linux

package ipcmap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestCloseRacingCalls closes a handle to a mapped (named) map while
// goroutines call every method on it: each call either completes or
// returns os.ErrClosed, and none touches the mapping after Close unmapped
// it (which would fault and crash the test binary).
func TestCloseRacingCalls(t *testing.T) {
	m, _ := namedMap(t, &Options{Entries: 64, Bytes: 8192})
	fillMap(t, m, prefill())
	ctx := context.Background()
	calls := []func(i int) error{
		func(int) error { _, _, err := m.Get([]byte("k1")); return err },
		func(int) error { _, _, err := m.AppendValue(make([]byte, 0, 64), []byte("k2")); return err },
		func(i int) error { return m.Set(ctx, fmt.Appendf(nil, "s%d", i%8), []byte("value")) },
		func(i int) error { _, err := m.Delete(ctx, fmt.Appendf(nil, "s%d", (i+4)%8)); return err },
		func(int) error { _, err := m.CompareAndSwap(ctx, []byte("k3"), []byte("x"), []byte("y")); return err },
		func(i int) error {
			_, _, err := m.LoadOrStore(ctx, fmt.Appendf(nil, "l%d", i%4), []byte("v"))
			return err
		},
		func(int) error { _, err := m.Len(); return err },
		func(int) error { _, err := m.Stats(); return err },
		func(int) error { return m.Check() },
		func(int) error {
			for range m.Range() {
			}
			_, err := m.Len() // Range ends quietly on a closed handle: Len says why
			return err
		},
		func(int) error { _, err := m.GobEncode(); return err },
	}
	var started sync.WaitGroup // each goroutine has made 10 calls, or ended
	errs := make(chan error, len(calls))
	for j, call := range calls {
		started.Add(1)
		go func() {
			var once sync.Once
			defer once.Do(started.Done)
			for i := 0; ; i++ {
				if i == 10 {
					once.Do(started.Done)
				}
				err := call(i)
				if errors.Is(err, os.ErrClosed) {
					errs <- nil
					return
				}
				if err != nil && !errors.Is(err, ErrFull) {
					errs <- fmt.Errorf("call %d: %w", j, err)
					return
				}
			}
		}()
	}
	started.Wait()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestCloseWaitsForRead closes a handle while a Get on it is stopped
// inside the mapping: Close must not return (nor unmap) until the Get
// has left, and the Get then returns its value whole.
func TestCloseWaitsForRead(t *testing.T) {
	m, _ := namedMap(t, &Options{Entries: 64, Bytes: 8192})
	want := prefill()
	fillMap(t, m, want)
	release, result := pausedGet(t, m, "k1")
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	for !m.closer.Closed() { // Close has begun; it unmaps next unless it waits
		runtime.Gosched()
	}
	select {
	case err := <-closed:
		release()
		t.Fatalf("Close returned (%v) while a Get was inside the mapping", err)
	case <-time.After(50 * time.Millisecond): // a grace for a wrong Close to show; a right one never returns here
	}
	release()
	if got, want := <-result, fmt.Sprintf("%q, true, <nil>", want["k1"]); got != want {
		t.Fatalf("Get across Close = %s, want %s", got, want)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
