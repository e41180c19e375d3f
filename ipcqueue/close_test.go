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

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/robust"
)

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

// closeWakes closes q while the n calls that start starts are asleep
// (start returns once they are), and checks that each returns
// os.ErrClosed. None of the waiters these tests close on has a timeout but
// a holder's slow check (see wait.go): without Close's wake-up an
// unwatched one sleeps for ever, and Close, which waits for the calls in
// progress, never returns; so Close runs in a goroutine, and a waiter still
// asleep after hangAfter fails the test. (The tests log the times: some
// hundreds of microseconds on an idle machine.)
func closeWakes(t *testing.T, q *Queue, n int, start func(errs chan<- error)) {
	t.Helper()
	errs := make(chan error, n)
	start(errs)
	begin := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- q.Close() }()
	timeout := time.After(hangAfter)
wait:
	for left := n; left > 0; left-- {
		select {
		case err := <-errs:
			if !errors.Is(err, os.ErrClosed) {
				t.Errorf("waiter returned %v after Close; want os.ErrClosed", err)
			}
		case <-timeout:
			t.Errorf("%d of %d waiters still asleep %v after Close: not woken", left, n, hangAfter)
			if !wakeUntilReturned(q, errs, left) {
				t.FailNow() // Close still waits for them
			}
			break wait
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d waiters returned within %v", n, time.Since(begin))
	if t.Failed() {
		t.FailNow()
	}
}

// wakeUntilReturned ends a failed closeWakes: it shuts the queue down and
// wakes q's sleepers (what Close failed to do) until the left waiters have
// returned, so that Close, and the test, can end (a waiter for the
// consumer lock returns once the holder, a Get on another handle maybe,
// has seen the queue shut down). It reports whether they did within
// hangAfter. It counts itself as a call in progress (see guard.go), so
// that Close keeps the mapping while it wakes.
func wakeUntilReturned(q *Queue, errs <-chan error, left int) bool {
	q.calls.Add(1)
	defer q.calls.Add(-1)
	q.shut.Store(1)
	for deadline := time.Now().Add(hangAfter); left > 0; {
		if time.Now().After(deadline) {
			return false
		}
		for _, fx := range []*atomic.Uint32{q.dataFx, q.spaceFx, q.plock.Sleepers(), q.clock.Sleepers()} {
			robust.WakeAll(fx)
		}
		select {
		case <-errs:
			left--
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

// scenes is how many times a test of a watched waiter's wake-up runs its
// scene before it concludes that the wake-up is missing (see untilWoken).
const scenes = 5

// untilWoken runs scene, which wakes a waiter that follows a holder in
// another process and returns how many of the waiter's sleeps ran into
// their slow check meanwhile (robust.Unwoken), until that is 0; it fails
// the test if it never is in scenes runs. Without its wake-up the waiter's
// sleep ends at its slow check, every time; with it, only a scene in which
// the machine kept the waker off the CPU for the check's period
// (robust.CheckPeriod) between the waiter's sleep and the wake counts one,
// and a loaded machine spoils one scene now and then, never five in a row.
func untilWoken(t *testing.T, scene func(t *testing.T) uint64) {
	t.Helper()
	for i := 1; ; i++ {
		n := scene(t)
		if n == 0 {
			return
		}
		if i == scenes {
			t.Fatalf("in each of %d scenes a watched waiter ran into its slow check (%d sleeps in the last): it was not woken", scenes, n)
		}
		t.Logf("scene %d: %d sleeps ran into their slow check (a loaded machine?); again", i, n)
	}
}

// TestCloseWakesWaiters: a Get blocked on an empty queue, a Put blocked on
// a full one, and a Get waiting for the consumer lock that another Get of
// the handle holds while it waits, each return os.ErrClosed after Close
// from another goroutine, spinning or not, on a heap queue and on a mapped
// one. None of them follows a holder in another process: without Close's
// wake-up (robust.Closer) each would sleep for ever.
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
// when its own handle is closed; the other handle's Get goes on waiting,
// and takes the next message.
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
	if err := woken(t, held, "the other handle's Get, after a Put"); err != nil {
		t.Fatal(err)
	}
}

// TestCloseWakesFollower: a Get that waits for data while a live producer
// in another process holds the producer lock follows that holder, with a
// slow check (robust.CheckPeriod) that would end its sleep too, and see the
// handle closed. Close must end the sleep first, by its wake-up: no sleep
// of this process may run into its slow check (robust.Unwoken; see
// untilWoken for a scene a loaded machine spoils).
func TestCloseWakesFollower(t *testing.T) {
	untilWoken(t, func(t *testing.T) uint64 {
		q := namedQueue(t, 4096, nil)
		h := helperproc.Start(t, command(t, "stallput", q.Segment().Name()))
		defer h.Kill()
		h.Expect(t, "stalled")
		before := robust.Unwoken()
		closeWakes(t, q, 1, func(errs chan<- error) {
			sleeper(t, q, q.dataFx, errs, func() error { _, err := q.Get(context.Background()); return err })
		})
		return robust.Unwoken() - before
	})
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
