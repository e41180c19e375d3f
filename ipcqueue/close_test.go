//go:build linux

package ipcqueue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// promptly bounds how long a call blocked on a handle may take to return
// after Close. None of the waiters these tests close on has a timeout (no
// holder in another process to watch: see wait.go), so without Close's
// wake-up each would sleep for ever, and any bound shows the wake; this
// one leaves a loaded machine's scheduler room (the tests log the times:
// some hundreds of microseconds on an idle machine).
const promptly = time.Second

// queueKinds makes a queue of each kind a test runs on: on the Go heap
// (the race detector sees every access) and mapped (anonymous, memfd).
var queueKinds = []struct {
	name string
	make func(t *testing.T, size int) *Queue
}{
	{"heap", func(t *testing.T, size int) *Queue { return heapQueue(t, size, nil) }},
	{"anonymous", func(t *testing.T, size int) *Queue {
		q, err := New(size, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}},
}

// asleep waits until q's Stats count more than waits sleeps and fx has
// its sleeper bit set: a call is asleep (or about to be) on fx.
func asleep(t *testing.T, q *Queue, waits uint64, fx *atomic.Uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for q.waits.Load() <= waits || fx.Load()&1 == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the waiter never went to sleep")
		}
		time.Sleep(time.Millisecond)
	}
}

// sleeper runs op in a goroutine that sends op's error to errs, and
// returns once op is asleep on fx (counted in q's Stats).
func sleeper(t *testing.T, q *Queue, fx *atomic.Uint32, errs chan<- error, op func() error) {
	t.Helper()
	waits := q.Stats().Waits
	go func() { errs <- op() }()
	asleep(t, q, waits, fx)
}

// closeWakes closes q while the calls that start starts are asleep (start
// returns once they are), and checks that each of the n returns
// os.ErrClosed within promptly of the Close.
func closeWakes(t *testing.T, q *Queue, n int, start func(errs chan<- error)) {
	t.Helper()
	errs := make(chan error, n)
	start(errs)
	begin := time.Now()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	for range n {
		err := <-errs
		if el := time.Since(begin); !errors.Is(err, os.ErrClosed) || el > promptly {
			t.Fatalf("waiter returned %v, %v after Close; want os.ErrClosed within %v", err, el, promptly)
		}
	}
	t.Logf("%d waiters returned within %v", n, time.Since(begin))
}

// TestCloseWakesWaiters: a Get blocked on an empty queue, a Put blocked on
// a full one, and a Get waiting for the consumer lock that another Get of
// the handle holds while it waits, each return os.ErrClosed promptly after
// Close from another goroutine, spinning or not, on a heap queue and on a
// mapped one.
func TestCloseWakesWaiters(t *testing.T) {
	get := func(q *Queue) func() error {
		return func() error { _, err := q.Get(context.Background()); return err }
	}
	for _, kind := range queueKinds {
		for _, spin := range []time.Duration{-1, 0} {
			name := fmt.Sprintf("%s/spin=%v/", kind.name, spin)
			t.Run(name+"Get", func(t *testing.T) {
				q := spinning(kind.make(t, 1024), spin)
				closeWakes(t, q, 1, func(errs chan<- error) { sleeper(t, q, q.dataFx, errs, get(q)) })
			})
			t.Run(name+"Put", func(t *testing.T) {
				q := spinning(kind.make(t, 1024), spin)
				msg := make([]byte, 100)
				for {
					if ok, err := q.TryPut(msg); err != nil || !ok {
						break
					}
				}
				closeWakes(t, q, 1, func(errs chan<- error) {
					sleeper(t, q, q.spaceFx, errs, func() error { return q.Put(t.Context(), msg) })
				})
			})
			t.Run(name+"lock", func(t *testing.T) {
				q := spinning(kind.make(t, 1024), spin)
				closeWakes(t, q, 2, func(errs chan<- error) {
					sleeper(t, q, q.dataFx, errs, get(q))
					sleeper(t, q, q.clock.Sleepers(), errs, func() error {
						_, err := q.GetInto(t.Context(), make([]byte, 8))
						return err
					})
				})
			})
		}
	}
}

// TestCloseOtherHandle: a Get waiting for the consumer lock, which a Get
// on another handle holds while it waits for data, returns os.ErrClosed
// promptly when its own handle is closed; the other handle's Get goes on
// waiting, and takes the next message.
func TestCloseOtherHandle(t *testing.T) {
	holder := spinning(namedQueue(t, 1024, nil), -1)
	q, err := Open(holder.Segment().Name())
	if err != nil {
		t.Fatal(err)
	}
	q.SetSpin(-1)
	held := make(chan error, 1)
	sleeper(t, holder, holder.dataFx, held, func() error {
		msg, err := holder.Get(context.Background())
		if err == nil && string(msg) != "after" {
			err = fmt.Errorf("holder got %q", msg)
		}
		return err
	})
	closeWakes(t, q, 1, func(errs chan<- error) {
		sleeper(t, holder, holder.clock.Sleepers(), errs, func() error { _, err := q.Get(context.Background()); return err })
	})
	select {
	case err := <-held:
		t.Fatalf("the other handle's Get returned %v on Close", err)
	case <-time.After(10 * time.Millisecond):
	}
	if err := holder.Put(t.Context(), []byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// TestCloseDuringTraffic closes a mapped handle while goroutines stream
// messages through it, on the fast paths most of the time: no call touches
// the mapping after Close released it (that would fault), and every call
// returns nil or os.ErrClosed. A second handle on the same queue keeps
// working afterwards: no lock is left held.
func TestCloseDuringTraffic(t *testing.T) {
	rounds := 150
	if testing.Short() {
		rounds = 20
	}
	other := namedQueue(t, 4096, nil)
	for i := range rounds {
		q, err := Open(other.Segment().Name())
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		calls := func(op func() error) {
			wg.Go(func() {
				for {
					if err := op(); err != nil {
						if !errors.Is(err, os.ErrClosed) {
							t.Errorf("round %d: %v", i, err)
						}
						return
					}
				}
			})
		}
		msg := make([]byte, 24)
		calls(func() error { return q.Put(context.Background(), msg) })
		calls(func() error { _, err := q.GetInto(context.Background(), make([]byte, 64)); return err })
		calls(func() error { _, _, err := q.TryGet(); return err })
		calls(func() error { _, err := q.TryPut(msg); return err })
		calls(func() error {
			if q.Len() < 0 || q.IsShutdown() {
				return errors.New("impossible Len or IsShutdown")
			}
			if !q.open.Load() {
				return errClosed
			}
			return nil
		})
		time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	// The other handle: drain, then a round trip.
	for {
		_, ok, err := other.TryGet()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
	}
	if err := other.Put(t.Context(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if m, err := other.Get(t.Context()); err != nil || string(m) != "x" {
		t.Fatalf("Get on the other handle = %q, %v", m, err)
	}
}

// TestZeroQueue: the zero Queue is a closed handle.
func TestZeroQueue(t *testing.T) {
	var q Queue
	if err := q.Put(t.Context(), []byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Put = %v", err)
	}
	if _, err := q.Get(t.Context()); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Get = %v", err)
	}
	if _, ok, err := q.TryGet(); ok || !errors.Is(err, os.ErrClosed) {
		t.Fatalf("TryGet = %v, %v", ok, err)
	}
	if err := q.Shutdown(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Shutdown = %v", err)
	}
	if q.Len() != 0 || q.IsShutdown() || q.Stats() != (Stats{}) || q.Capacity() != 0 {
		t.Fatal("a zero Queue reports a queue")
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}
