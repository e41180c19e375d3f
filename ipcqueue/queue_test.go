package ipcqueue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func heapQueue(t testing.TB, size int, opts *Options) *Queue {
	t.Helper()
	q, err := NewHeap(size, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// spinning sets q's spin budget (see Queue.SetSpin) and returns q.
func spinning(q *Queue, d time.Duration) *Queue {
	q.SetSpin(d)
	return q
}

func TestPutGetBasic(t *testing.T) {
	q := heapQueue(t, 1024, nil)
	ctx := t.Context()
	if q.Capacity() != 1024-8 || q.MaxMsg() != 256 {
		t.Fatalf("capacity %d max %d", q.Capacity(), q.MaxMsg())
	}
	for i := range 100 { // several laps, with padding
		msg := bytes.Repeat([]byte{byte(i)}, i%50)
		if err := q.Put(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if q.Len() != 1 {
			t.Fatalf("Len %d", q.Len())
		}
		got, err := q.Get(ctx)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d: got %q, %v", i, got, err)
		}
	}
	if _, ok, err := q.TryGet(); ok || err != nil {
		t.Fatalf("TryGet on empty = %v, %v", ok, err)
	}
	if err := q.Put(ctx, make([]byte, 257)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put 257 = %v", err)
	}
	// Fill with TryPut until full, then drain with TryGetInto.
	n := 0
	for {
		ok, err := q.TryPut([]byte("0123456789"))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		n++
	}
	if n < 1024/24-2 || q.Len() != n {
		t.Fatalf("only %d 10-byte messages fit in 1024 bytes (Len %d)", n, q.Len())
	}
	buf := make([]byte, 4)
	if m, err := q.GetInto(ctx, buf); !errors.Is(err, io.ErrShortBuffer) || m != 10 {
		t.Fatalf("GetInto short = %d, %v", m, err)
	}
	buf = make([]byte, 64)
	for i := range n {
		m, ok, err := q.TryGetInto(buf)
		if !ok || err != nil || string(buf[:m]) != "0123456789" {
			t.Fatalf("%d: %q %v %v", i, buf[:m], ok, err)
		}
	}
	st := q.Stats()
	if st.Puts != uint64(100+n) || st.Gets != st.Puts || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestShutdownDrains: after Shutdown, Put fails with ErrShutdown and Get
// drains, then returns io.EOF; after Close the handle returns os.ErrClosed.
func TestShutdownDrains(t *testing.T) {
	q := heapQueue(t, 1024, nil)
	ctx := t.Context()
	q.Put(ctx, []byte("a"))
	q.Put(ctx, []byte("b"))
	if err := q.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := q.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := q.Put(ctx, []byte("c")); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Put after Shutdown = %v", err)
	}
	for _, want := range []string{"a", "b"} {
		if got, err := q.Get(ctx); err != nil || string(got) != want {
			t.Fatalf("Get = %q, %v", got, err)
		}
	}
	if _, err := q.Get(ctx); err != io.EOF {
		t.Fatalf("Get on drained = %v", err)
	}
	q.Close()
	if _, err := q.Get(ctx); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Get after Close = %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWaitersWoken blocks consumers on an empty queue and producers on a
// full one, then cancels some, which return ctx's error, and then shuts the
// queue down under the others, which return io.EOF and ErrShutdown. Each
// waiter is asleep before the next starts (the first Get on the data, the
// other Gets on the consumer lock that it holds, the Puts on the space), and
// none has a timeout (no holder in another process to watch): without the
// wake-up it is owed, it would sleep for ever, and the test fails after
// hangAfter. (A waiter that is cancelled and, before it runs again, finds
// the queue shut down may return either; so the cancelled ones are
// collected before the Shutdown.)
func TestWaitersWoken(t *testing.T) {
	for _, spin := range []time.Duration{0, -1} {
		q := spinning(heapQueue(t, 256, nil), spin)
		full := spinning(heapQueue(t, 256, nil), spin)
		for {
			if ok, _ := full.TryPut(make([]byte, 40)); !ok {
				break
			}
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancelled, others := make(chan error, 8), make(chan error, 8)
		for i := range 8 {
			c, errs := t.Context(), others
			if i%2 == 0 {
				c, errs = ctx, cancelled
			}
			fx := q.clock.Sleepers()
			if i == 0 {
				fx = q.dataFx
			}
			sleeper(t, q, fx, errs, func() error { _, err := q.Get(c); return err })
			sleeper(t, full, full.spaceFx, errs, func() error { return full.Put(c, []byte("x")) })
		}
		cancel()
		for range 8 {
			if err := woken(t, cancelled, "a cancelled waiter"); !errors.Is(err, context.Canceled) {
				t.Errorf("spin %v: a cancelled waiter returned %v", spin, err)
			}
		}
		if full.Len() == 0 {
			t.Error("cancelled Put changed the queue")
		}
		q.Shutdown()
		full.Shutdown()
		var eof, shut int
		for range 8 {
			switch err := woken(t, others, "a waiter after Shutdown"); {
			case err == io.EOF:
				eof++
			case errors.Is(err, ErrShutdown):
				shut++
			default:
				t.Errorf("unexpected %v", err)
			}
		}
		if eof != 4 || shut != 4 {
			t.Errorf("spin %v: %d EOF, %d ErrShutdown", spin, eof, shut)
		}
	}
}

// hangAfter bounds the wait for something that must happen unless a
// wake-up (or a repair) is missing: a waiter with no holder in another
// process to watch has no timeout (see wait.go), so without its wake-up it
// sleeps for ever. Only a hang misses this bound, on however loaded a
// machine.
const hangAfter = 10 * time.Second

// waitFor polls cond every millisecond until it holds, and fails the test
// if it does not within hangAfter.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(hangAfter); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, hangAfter)
		}
	}
}

// woken returns the next value from ch, the report of a waiter that must
// have been woken, and fails the test if none comes within hangAfter (the
// waiter still sleeps) or ch is closed.
func woken[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatalf("%s: ended without a report", what)
		}
		return v
	case <-time.After(hangAfter):
		t.Fatalf("%s: still asleep after %v, not woken", what, hangAfter)
	}
	var zero T
	return zero
}

// asleep waits until q has counted more than waits sleeps and fx has its
// sleeper bit set: a call is asleep (or about to be) on fx.
func asleep(t testing.TB, q *Queue, waits uint64, fx *atomic.Uint32) {
	t.Helper()
	waitFor(t, "the waiter's sleep", func() bool { return q.waits.Load() > waits && fx.Load()&1 != 0 })
}

// sleeper runs op in a goroutine that sends op's error to errs, and
// returns once op is asleep on fx (counted in q's Stats).
func sleeper(t testing.TB, q *Queue, fx *atomic.Uint32, errs chan<- error, op func() error) {
	t.Helper()
	waits := q.waits.Load()
	go func() { errs <- op() }()
	asleep(t, q, waits, fx)
}

// TestHeapMPMC runs 4 producers and 2 consumers as goroutines over a heap
// queue (for the race detector), with positions started just before they
// wrap around 2^64.
func TestHeapMPMC(t *testing.T) {
	const producers, consumers, per = 4, 2, 25000
	for _, spin := range []time.Duration{0, -1} {
		q := spinning(heapQueue(t, 4096, nil), spin)
		start := ^uint64(0) - 64*1024 + 1
		q.tail.Store(start)
		q.head.Store(start)
		q.freed.Store(start)
		q.cachedHead = start
		runMPMC(t, q, producers, consumers, per)
		if h := q.head.Load(); h > start {
			t.Fatalf("head %d did not wrap", h)
		}
	}
}

func runMPMC(t *testing.T, q *Queue, producers, consumers, per int) {
	ctx := t.Context()
	var pw, cw sync.WaitGroup
	for p := range producers {
		pw.Go(func() {
			buf := make([]byte, 128)
			for s := range per {
				if err := q.Put(ctx, makeMsg(buf, p, uint64(s))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	checks := make([]*checker, consumers)
	for c := range consumers {
		checks[c] = newChecker(producers, per)
		cw.Go(func() {
			buf := make([]byte, 128)
			for {
				n, err := q.GetInto(ctx, buf)
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if err := checks[c].add(buf[:n]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	pw.Wait()
	q.Shutdown()
	cw.Wait()
	all := newChecker(producers, per)
	for _, c := range checks {
		if err := all.merge(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := all.complete(per); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Puts != uint64(producers*per) || st.Gets != st.Puts || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSharedHandleMapped: goroutines sharing one handle of a mapped
// (memfd) queue, producers on a ring kept full. The race detector does not
// see the locks' atomics on the mapping; the handle's fields they guard
// must not be reported racing (robust.Lock tells the race detector about
// each acquire and release: internal/robust, race.go).
func TestSharedHandleMapped(t *testing.T) {
	q, err := New(1024, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	const producers, per = 3, 2000
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for range per {
				if err := q.Put(t.Context(), make([]byte, 100)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range producers * per {
		if _, err := q.Get(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}
