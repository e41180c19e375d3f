//go:build linux

package ipctopic

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/robust"
)

// result returns what a call running on another goroutine sent on done,
// failing the test if it has not returned within seconds (it was not
// woken).
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting call was not woken")
		return nil
	}
}

// announced waits until a waiter has announced itself on fx (its
// sleepers bit): it is about to sleep or asleep.
func announced(fx *atomic.Uint32) {
	for fx.Load()&1 == 0 {
		time.Sleep(time.Millisecond)
	}
}

func TestPublishRecvBasic(t *testing.T) {
	tp := heapTopic(t, &Options{Slots: 8, MaxMsg: 64})
	if tp.Slots() != 8 || tp.MaxMsg() != 64 || tp.MaxSubscribers() != DefaultSubscribers || tp.Policy() != Block {
		t.Fatalf("slots %d max %d subs %d policy %v", tp.Slots(), tp.MaxMsg(), tp.MaxSubscribers(), tp.Policy())
	}
	ctx := t.Context()
	s := subscribe(t, tp)
	buf := make([]byte, 64)
	for i := range uint64(100) { // many laps of the ring
		if err := tp.Publish(ctx, makeMsg(buf, i)); err != nil {
			t.Fatal(err)
		}
		m, err := s.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if seq, err := parseMsg(m); err != nil || seq != i {
			t.Fatalf("got message %d (%v), want %d", seq, err, i)
		}
	}
	if err := tp.Publish(ctx, make([]byte, 65)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Publish of 65 bytes = %v", err)
	}
	if st := tp.Stats(); st.Published != 100 || st.Subscribers != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOptionsInvalid(t *testing.T) {
	for _, o := range []Options{
		{Slots: -1}, {Slots: maxSlots + 1}, {MaxMsg: -1}, {MaxMsg: MaxMessage + 1},
		{Subscribers: -1}, {Subscribers: MaxSubscribers + 1}, {Policy: 2},
		{Slots: maxSlots, MaxMsg: MaxMessage},
	} {
		if _, err := NewHeap(&o); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("NewHeap(%+v) = %v, want os.ErrInvalid", o, err)
		}
	}
}

// TestFanoutHeap: 2 publisher and 4 subscriber goroutines over a heap
// topic (for the race detector), block policy, a small ring: every
// subscriber receives every message, whole, in each publisher's order.
func TestFanoutHeap(t *testing.T) {
	const pubs, subs, per = 2, 4, 5000
	tp := heapTopic(t, &Options{Slots: 16, MaxMsg: 64})
	ctx := t.Context()
	var ss []*Subscriber
	for range subs {
		ss = append(ss, subscribe(t, tp))
	}
	var wg sync.WaitGroup
	errs := make(chan error, pubs+subs)
	for p := range pubs {
		wg.Go(func() {
			buf := make([]byte, 64)
			for i := range per {
				// publisher p numbers its messages p, p+pubs, ...
				if err := tp.Publish(ctx, makeMsg(buf, uint64(i*pubs+p))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	counts := make([]int, subs)
	for i, s := range ss {
		wg.Go(func() {
			last := []int64{-1, -1}
			for {
				m, err := s.Recv(ctx)
				if errors.Is(err, io.EOF) {
					return
				}
				if err == nil {
					var seq uint64
					seq, err = parseMsg(m)
					p := seq % pubs
					if err == nil && int64(seq) <= last[p] {
						err = errors.New("out of order")
					}
					last[p] = int64(seq)
				}
				if err != nil {
					errs <- err
					return
				}
				counts[i]++
			}
		})
	}
	go func() {
		for tp.Stats().Published < pubs*per {
			time.Sleep(time.Millisecond)
		}
		tp.Shutdown()
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, n := range counts {
		if n != pubs*per {
			t.Errorf("subscriber %d received %d messages, want %d", i, n, pubs*per)
		}
	}
}

// TestJoinLeave: a subscriber receives exactly the messages published
// after it joined; one that left holds nobody up; slots are reused.
func TestJoinLeave(t *testing.T) {
	tp := heapTopic(t, &Options{Slots: 4, MaxMsg: 64, Subscribers: 2})
	ctx := t.Context()
	buf := make([]byte, 64)
	pub := func(from, to uint64) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := tp.Publish(ctx, makeMsg(buf, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	expect := func(s *Subscriber, from, to uint64) {
		t.Helper()
		for i := from; i < to; i++ {
			m, err := s.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if seq, err := parseMsg(m); err != nil || seq != i {
				t.Fatalf("got message %d (%v), want %d", seq, err, i)
			}
		}
	}
	pub(0, 10) // nobody listens: nothing blocks
	a := subscribe(t, tp)
	pub(10, 12)
	b := subscribe(t, tp)
	pub(12, 14)
	expect(a, 10, 14)
	expect(b, 12, 14)
	if _, err := tp.Subscribe(ctx); !errors.Is(err, ErrFull) {
		t.Fatalf("third Subscribe = %v, want ErrFull", err)
	}
	// b stops reading; a reads on. The ring fills behind b ...
	pub(14, 18)
	expect(a, 14, 18)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := tp.Publish(short, makeMsg(buf, 18)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish on a full ring = %v", err)
	}
	if p := tp.Stats().Published; p != 18 {
		t.Fatalf("a cancelled Publish published: %d", p)
	}
	// ... until b leaves, which frees a blocked publisher.
	done := make(chan error, 1)
	waits := tp.Stats().Waits
	go func() { done <- tp.Publish(ctx, makeMsg(buf, 18)) }()
	// The cancelled Publish left its sleepers bit set: wait for this one's
	// sleep instead (nothing else sleeps here).
	for tp.Stats().Waits == waits {
		time.Sleep(time.Millisecond)
	}
	unwoken := robust.Unwoken()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	if robust.Unwoken() != unwoken {
		t.Fatal("the publisher found out that b left on its slow check: b's Close did not wake it")
	}
	expect(a, 18, 19)
	if _, err := b.Recv(ctx); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Recv after Close = %v", err)
	}
	c := subscribe(t, tp) // b's slot
	pub(19, 20)
	expect(c, 19, 20)
	expect(a, 19, 20)
}

// TestOverwriteLagged: under the overwrite policy a subscriber that fell
// behind is told exactly how many messages it missed, then receives the
// oldest ones still held, in order; Read reports the same.
func TestOverwriteLagged(t *testing.T) {
	for _, read := range []bool{false, true} {
		tp := heapTopic(t, &Options{Slots: 8, MaxMsg: 64, Policy: Overwrite})
		ctx := t.Context()
		s := subscribe(t, tp)
		recv := func() (uint64, error) {
			if !read {
				m, err := s.Recv(ctx)
				if err != nil {
					return 0, err
				}
				return parseMsg(m)
			}
			var seq uint64
			err := s.Read(ctx, func(m []byte) (err error) { seq, err = parseMsg(m); return err })
			return seq, err
		}
		buf := make([]byte, 64)
		next := uint64(0)
		for _, round := range []struct{ publish, missed uint64 }{{100, 92}, {3, 0}, {8, 0}, {9, 1}, {1000, 992}} {
			for range round.publish {
				if err := tp.Publish(ctx, makeMsg(buf, next)); err != nil {
					t.Fatal(err)
				}
				next++
			}
			want := next - round.publish + round.missed
			if round.missed != 0 {
				_, err := recv()
				var lag *LaggedError
				if !errors.As(err, &lag) || lag.Missed != round.missed || !errors.Is(err, ErrLagged) {
					t.Fatalf("read=%v: after %d published, got %v, want %d missed", read, round.publish, err, round.missed)
				}
			}
			for i := want; i < next; i++ {
				seq, err := recv()
				if err != nil || seq != i {
					t.Fatalf("read=%v: got message %d (%v), want %d", read, seq, err, i)
				}
			}
		}
		tp.Shutdown()
		if _, err := recv(); err != io.EOF {
			t.Fatalf("after shutdown: %v", err)
		}
	}
}

// TestOverwriteConcurrent: a publisher overwriting as fast as it can and
// subscribers reading: each message they get is whole and later than the
// one before, and what they were told they missed plus what they got is
// every message.
func TestOverwriteConcurrent(t *testing.T) {
	const total = 20000
	tp := heapTopic(t, &Options{Slots: 2, MaxMsg: bigMsg, Policy: Overwrite})
	ctx := t.Context()
	var ss []*Subscriber
	for range 3 {
		ss = append(ss, subscribe(t, tp))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i, s := range ss {
		wg.Go(func() {
			var got, missed uint64
			next := uint64(0)
			for {
				var seq uint64
				var err error
				if i%2 == 0 {
					var m []byte
					if m, err = s.Recv(ctx); err == nil {
						seq, err = parseBig(m)
					}
				} else {
					err = s.Read(ctx, func(m []byte) (err error) { seq, err = parseBig(m); return err })
				}
				var lag *LaggedError
				switch {
				case errors.Is(err, io.EOF):
					if got+missed != total {
						errs <- errors.New("got + missed != published")
					}
					return
				case errors.As(err, &lag):
					missed += lag.Missed
					next += lag.Missed
					continue
				case err != nil && !raceEnabled && i%2 == 1:
					// Read without a copy may see a message being
					// overwritten; Read then reports a lag, never this.
					errs <- err
					return
				case err != nil:
					errs <- err
					return
				}
				if seq != next {
					errs <- errors.New("a message out of order")
					return
				}
				next++
				got++
			}
		})
	}
	buf := make([]byte, bigMsg)
	for i := range uint64(total) {
		for w := 0; w < bigMsg; w += 8 {
			binary.LittleEndian.PutUint64(buf[w:], i)
		}
		if err := tp.Publish(ctx, buf); err != nil {
			t.Fatal(err)
		}
	}
	tp.Shutdown()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// bigMsg is the size of TestOverwriteConcurrent's messages: long enough
// that a publisher often overwrites one while a subscriber copies it.
const bigMsg = 4096

// parseBig returns the number of a message of bigMsg bytes, every word of
// which holds it, or an error if the words differ (torn).
func parseBig(m []byte) (uint64, error) {
	if len(m) != bigMsg {
		return 0, fmt.Errorf("message of %d bytes", len(m))
	}
	seq := binary.LittleEndian.Uint64(m)
	for w := 8; w < len(m); w += 8 {
		if v := binary.LittleEndian.Uint64(m[w:]); v != seq {
			return seq, fmt.Errorf("message %d torn: word %d holds %d", seq, w/8, v)
		}
	}
	return seq, nil
}

// TestReadZeroCopy: Read hands fn the message where it lies in the topic's
// memory.
func TestReadZeroCopy(t *testing.T) {
	tp := heapTopic(t, &Options{Slots: 4, MaxMsg: 64})
	s := subscribe(t, tp)
	ctx := t.Context()
	tp.Publish(ctx, []byte("hello"))
	b := tp.Segment().Bytes()
	lo, hi := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&b[len(b)-1]))
	fnErr := errors.New("fn's error")
	err := s.Read(ctx, func(m []byte) error {
		if p := uintptr(unsafe.Pointer(&m[0])); p < lo || p > hi || string(m) != "hello" {
			t.Errorf("Read gave %q at %#x, outside the segment [%#x, %#x]", m, p, lo, hi)
		}
		return fnErr
	})
	if err != fnErr {
		t.Fatalf("Read = %v, want fn's error", err)
	}
	tp.Shutdown()
	if err := s.Read(ctx, func([]byte) error { return nil }); err != io.EOF {
		t.Fatalf("Read after fn's error and shutdown = %v, want io.EOF (the message was received)", err)
	}
}

// TestShutdown: subscribers drain and then get io.EOF; publishers and
// joiners get ErrShutdown; waiters in Recv and Publish are woken.
func TestShutdown(t *testing.T) {
	tp := heapTopic(t, &Options{Slots: 2, MaxMsg: 64})
	ctx := t.Context()
	full := subscribe(t, tp)
	tp.Publish(ctx, []byte("a"))
	tp.Publish(ctx, []byte("b"))
	pubDone := make(chan error, 1)
	go func() { pubDone <- tp.Publish(ctx, []byte("c")) }() // waits for full
	announced(tp.spaceFx)
	unwoken := robust.Unwoken()
	if err := tp.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := result(t, pubDone); !errors.Is(err, ErrShutdown) {
		t.Fatalf("waiting Publish = %v, want ErrShutdown", err)
	}
	if robust.Unwoken() != unwoken {
		t.Fatal("the waiting Publish found the shutdown on its slow check: Shutdown did not wake it")
	}
	for _, want := range []string{"a", "b"} {
		if m, err := full.Recv(ctx); err != nil || string(m) != want {
			t.Fatalf("drain: %q, %v", m, err)
		}
	}
	if _, err := full.Recv(ctx); err != io.EOF {
		t.Fatalf("after drain: %v", err)
	}
	if err := tp.Publish(ctx, []byte("x")); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Publish = %v", err)
	}
	if _, err := tp.Subscribe(ctx); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Subscribe = %v", err)
	}
	if err := tp.Shutdown(); err != nil || !tp.IsShutdown() {
		t.Fatalf("second Shutdown = %v", err)
	}
}

// TestShutdownWakesRecv: a Recv waiting on an empty topic returns io.EOF
// when another handle shuts the topic down.
func TestShutdownWakesRecv(t *testing.T) {
	tp := heapTopic(t, nil)
	s := subscribe(t, tp)
	done := make(chan error, 1)
	go func() { _, err := s.Recv(t.Context()); done <- err }()
	announced(tp.dataFx)
	tp.Shutdown()
	if err := result(t, done); err != io.EOF {
		t.Fatalf("Recv = %v, want io.EOF", err)
	}
}

// TestClose: closing a handle wakes its waiters with os.ErrClosed, makes
// its subscribers leave, and leaves the topic working for other handles.
func TestClose(t *testing.T) {
	for _, pub := range []bool{false, true} {
		tp := namedTopic(t, &Options{Slots: 2, MaxMsg: 8})
		other, err := Open(tp.Segment().Name())
		if err != nil {
			t.Fatal(err)
		}
		s := subscribe(t, tp)
		done := make(chan error, 1)
		if pub {
			stuck := subscribe(t, other)
			_ = stuck
			other.Publish(t.Context(), []byte("1"))
			other.Publish(t.Context(), []byte("2"))
			go func() { done <- other.Publish(t.Context(), []byte("3")) }()
		} else {
			go func() { _, err := s.Recv(t.Context()); done <- err }()
		}
		if pub {
			announced(tp.spaceFx)
		} else {
			announced(tp.dataFx)
		}
		closing := tp
		if pub {
			closing = other
		}
		unwoken := robust.Unwoken()
		if err := closing.Close(); err != nil {
			t.Fatal(err)
		}
		if err := result(t, done); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("pub=%v: waiter got %v, want os.ErrClosed", pub, err)
		}
		if robust.Unwoken() != unwoken {
			t.Fatalf("pub=%v: the waiter found the Close on its slow check: Close did not wake it", pub)
		}
		if err := closing.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
		if err := closing.Publish(t.Context(), nil); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Publish after Close = %v", err)
		}
		if _, err := closing.Subscribe(t.Context()); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Subscribe after Close = %v", err)
		}
		survivor := other
		if pub {
			survivor = tp
		}
		want := 0 // s, tp's, left with tp
		if pub {
			want = 1 // stuck, other's, left with other; s stays
		}
		if n := survivor.Stats().Subscribers; n != want {
			t.Fatalf("pub=%v: %d subscribers after Close, want %d (the closed handle's left)", pub, n, want)
		}
		if pub { // make room: s is behind by the ring
			s.Recv(t.Context())
			s.Recv(t.Context())
		}
		if err := survivor.Publish(t.Context(), []byte("after")); err != nil {
			t.Fatal(err)
		}
		other.Close()
	}
	var zero Topic
	if err := zero.Publish(t.Context(), nil); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("zero Topic: %v", err)
	}
	if err := zero.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRecvCancel: a cancelled Recv returns ctx's error and loses nothing.
func TestRecvCancel(t *testing.T) {
	tp := heapTopic(t, nil)
	s := subscribe(t, tp)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { _, err := s.Recv(ctx); done <- err }()
	announced(tp.dataFx)
	cancel()
	if err := result(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv = %v", err)
	}
	tp.Publish(t.Context(), []byte("next"))
	if m, err := s.Recv(t.Context()); err != nil || string(m) != "next" {
		t.Fatalf("after cancel: %q, %v", m, err)
	}
}

// A block-policy subscriber stores its cursor only once per batch of
// messages, but always before it waits: a subscriber that has read
// everything never holds a publisher back (without that store, the
// publisher would wait for a cursor that a waiting subscriber never
// moves).
func TestCursorShownBeforeWait(t *testing.T) {
	tp := heapTopic(t, &Options{Slots: 64, MaxMsg: 8})
	if b := showBatch(64); b < 2 {
		t.Fatalf("batch %d: the test needs a batch of several messages", b)
	}
	s := subscribe(t, tp)
	if err := tp.Publish(t.Context(), []byte("m0")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(t.Context()); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Recv(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv on an empty topic with a done ctx: %v", err)
	}
	if c := s.cursor.Load(); c != 1 {
		t.Fatalf("cursor %d after a wait for message 1, want 1", c)
	}
	// The ring has room for messages 1 to 64: a done ctx publishes them
	// all, since none waits.
	for i := range 64 {
		if err := tp.Publish(done, []byte("m")); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
}

// Shutdown waits for the publisher lock as long as its holder may be
// alive, with no deadline (as the queue's Shutdown does its producer
// lock): a lock word naming a process whose liveness cannot be proven (a
// valid token of a uid with no registry) keeps it waiting, and closing the
// handle ends that wait at once with os.ErrClosed.
func TestShutdownWaitsForUnknownHolder(t *testing.T) {
	tp := heapTopic(t, &Options{Slots: 4, MaxMsg: 8})
	const unknown = uint64(0x7ffffff0)<<30 | 1<<20 | 5 // uid 0x7ffffff0, registry 1, nonce 5
	if st := liveness.Check(liveness.Token(unknown)); st != liveness.Unknown {
		t.Fatalf("the planted holder is %v, want Unknown", st)
	}
	u64At(tp.b, offPLock).Store(unknown)
	errc := make(chan error, 1)
	go func() { errc <- tp.Shutdown() }()
	for tp.plock.Sleepers().Load()&1 == 0 {
		select {
		case err := <-errc:
			t.Fatalf("Shutdown with the publisher lock held by an unknown process: %v, want a wait", err)
		case <-time.After(time.Millisecond):
		}
	}
	unwoken := robust.Unwoken()
	tp.Close()
	if err := <-errc; !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Shutdown when its handle closed: %v, want os.ErrClosed", err)
	}
	if robust.Unwoken() != unwoken {
		t.Fatal("Close did not wake Shutdown's wait for the lock: it saw the close at its slow check")
	}
}
