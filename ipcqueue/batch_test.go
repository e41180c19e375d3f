//go:build linux

package ipcqueue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// Tests of PutBatch, Reserve/Claim, Read and GetBatch over heap queues (the
// race detector sees them), and of the strict Try promise.

// batchOf returns k test messages of producer p from seq on, in bufs.
func batchOf(bufs [][]byte, p int, seq uint64, k int) [][]byte {
	out := bufs[:k]
	for i := range out {
		out[i] = makeMsg(out[i][:cap(out[i])], p, seq+uint64(i))
	}
	return out
}

func newBufs(k, size int) [][]byte {
	bufs := make([][]byte, k)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs
}

// TestPutBatchRead puts batches from every ring offset (so some wrap, with
// a padding before their first record or inside them) and reads them back
// with Read and GetBatch: each whole, in order, untorn.
func TestPutBatchRead(t *testing.T) {
	ctx := t.Context()
	q := heapQueue(t, 1024, nil)
	bufs, out := newBufs(8, 128), newBufs(8, 128)
	seq := uint64(0)
	for round := range 200 {
		k := 1 + round%7
		b := batchOf(bufs, 0, seq, k)
		if n, err := q.PutBatch(ctx, b); n != k || err != nil {
			t.Fatalf("round %d: PutBatch = %d, %v", round, n, err)
		}
		got := 0
		for got < k {
			var n int
			var err error
			if round%2 == 0 {
				n, err = q.Read(ctx, 3, func(m []byte) error {
					p, s, err := parseMsg(m)
					if err == nil && (p != 0 || s != seq) {
						err = fmt.Errorf("got %d/%d, want 0/%d", p, s, seq)
					}
					seq++
					return err
				})
			} else {
				n, err = q.GetBatch(ctx, out[:3])
				for _, m := range out[:n] {
					if _, s, err := parseMsg(m); err != nil || s != seq {
						t.Fatalf("round %d: GetBatch gave seq %d (%v), want %d", round, s, err, seq)
					}
					seq++
				}
			}
			if err != nil || n < 1 || n > 3 {
				t.Fatalf("round %d: read %d, %v", round, n, err)
			}
			got += n
		}
		if got != k || q.Len() != 0 {
			t.Fatalf("round %d: read %d of %d, Len %d", round, got, k, q.Len())
		}
	}
	if st := q.Stats(); st.Puts != seq || st.Gets != seq {
		t.Fatalf("stats %+v after %d messages", st, seq)
	}
}

// TestPutBatchTooLarge: a batch that cannot fit in the empty queue, or
// holds a message over MaxMsg, is ErrTooLarge with nothing written; the
// largest batch the rule admits fits from every offset.
func TestPutBatchTooLarge(t *testing.T) {
	ctx := t.Context()
	q := heapQueue(t, 256, nil) // capacity 248
	over := [][]byte{make([]byte, 8), make([]byte, q.MaxMsg()+1)}
	if n, err := q.PutBatch(ctx, over); n != 0 || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("PutBatch with a long message = %d, %v", n, err)
	}
	// Four 56-byte messages cost 256 > 248: never fits. (Waiting for room
	// would be the bug: the deadline ends it.)
	big := newBufs(4, 56)
	wctx, cancel := context.WithTimeout(ctx, hangAfter)
	defer cancel()
	if n, err := q.PutBatch(wctx, big); n != 0 || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("PutBatch of %d bytes = %d, %v", 4*64, n, err)
	}
	if ok, err := q.TryPutBatch(big); ok || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("TryPutBatch too large = %v, %v", ok, err)
	}
	if q.Len() != 0 || q.tail.Load() != 0 {
		t.Fatalf("a refused batch wrote: Len %d, tail %d", q.Len(), q.tail.Load())
	}
	// Three of 56 bytes (192) plus 56 for a padding = 248: fits anywhere.
	for off := 0; off < 256; off += 8 {
		q.head.Store(uint64(off))
		q.tail.Store(uint64(off))
		q.freed.Store(uint64(off))
		q.cachedHead = uint64(off)
		q.hdr(uint64(off)).Store(0)
		if ok, err := q.TryPutBatch(big[:3]); !ok || err != nil {
			t.Fatalf("offset %d: TryPutBatch of 3 = %v, %v", off, ok, err)
		}
		for range 3 {
			if _, ok, err := q.TryGet(); !ok || err != nil {
				t.Fatalf("offset %d: TryGet = %v, %v", off, ok, err)
			}
		}
	}
}

// TestPutBatchWaitsWhole: a blocking PutBatch on a queue without room for
// it waits without writing any of it (TryPutBatch says full), and goes in
// whole once there is room; a cancelled one writes nothing.
func TestPutBatchWaitsWhole(t *testing.T) {
	ctx := t.Context()
	q := heapQueue(t, 512, nil) // capacity 504: seven 64-byte records
	one := make([]byte, 56)
	for range 5 {
		q.Put(ctx, one)
	}
	b := newBufs(3, 56)
	if ok, err := q.TryPutBatch(b); ok || err != nil {
		t.Fatalf("TryPutBatch on a full queue = %v, %v", ok, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	errs := make(chan error, 1)
	sleeper(t, q, q.spaceFx, errs, func() error { _, err := q.PutBatch(cctx, b); return err })
	cancel()
	if err := woken(t, errs, "cancelled PutBatch"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled PutBatch = %v", err)
	}
	sleeper(t, q, q.spaceFx, errs, func() error { _, err := q.PutBatch(ctx, b); return err })
	if q.Len() != 5 {
		t.Fatalf("waiting batch wrote: Len %d", q.Len())
	}
	if _, err := q.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if err := woken(t, errs, "PutBatch after a Get"); err != nil {
		t.Fatal(err)
	}
	if q.Len() != 7 {
		t.Fatalf("Len %d after the batch, want 7", q.Len())
	}
}

// TestReadFnError: fn's error stops Read before that message, which stays
// with every later one; a panic in fn does the same and releases the lock.
func TestReadFnError(t *testing.T) {
	ctx := t.Context()
	q := heapQueue(t, 1024, nil)
	for i := range 6 {
		q.Put(ctx, []byte{byte(i)})
	}
	stop := errors.New("stop")
	n, err := q.Read(ctx, 10, func(m []byte) error {
		if m[0] == 2 {
			return stop
		}
		return nil
	})
	if n != 2 || err != stop {
		t.Fatalf("Read = %d, %v; want 2, stop", n, err)
	}
	func() {
		defer func() { recover() }()
		q.Read(ctx, 10, func(m []byte) error {
			if m[0] == 3 {
				panic("fn")
			}
			return nil
		})
	}()
	if m, err := q.Get(ctx); err != nil || m[0] != 3 {
		t.Fatalf("Get after the panic = %v, %v; want 3", m, err)
	}
	if n, err := q.Read(ctx, 10, func([]byte) error { return stop }); n != 0 || err != stop {
		t.Fatalf("Read refusing the first = %d, %v", n, err)
	}
	if q.Len() != 2 || q.reading.Load() != 0 {
		t.Fatalf("Len %d, reading %d", q.Len(), q.reading.Load())
	}
	if _, err := q.Read(ctx, 0, nil); err == nil {
		t.Fatal("Read of 0 messages: no error")
	}
}

// TestClaim: Commit publishes, Abort leaves nothing and counts nothing, an
// ended claim's Commit is ErrClaimEnded, and a held claim makes TryPut
// report full at once while Put waits for it.
func TestClaim(t *testing.T) {
	ctx := t.Context()
	q := heapQueue(t, 256, nil)
	for i := range 20 { // wraps the ring: claims after a padding
		cl, err := q.Reserve(ctx, 40)
		if err != nil {
			t.Fatal(err)
		}
		copy(cl.Bytes(), fmt.Sprintf("claim %-34d", i))
		if i%3 == 1 {
			cl.Abort()
			if err := cl.Commit(); !errors.Is(err, ErrClaimEnded) {
				t.Fatalf("Commit after Abort = %v", err)
			}
			if q.Len() != 0 || cl.Bytes() != nil {
				t.Fatal("an aborted claim left something")
			}
			continue
		}
		if err := cl.Commit(); err != nil {
			t.Fatal(err)
		}
		cl.Abort() // does nothing
		m, ok, err := q.TryGet()
		if want := fmt.Sprintf("claim %-34d", i); !ok || err != nil || string(m) != want {
			t.Fatalf("TryGet = %q, %v, %v; want %q", m, ok, err, want)
		}
	}
	if st := q.Stats(); st.Dropped != 0 || st.Puts != st.Gets {
		t.Fatalf("stats %+v", st)
	}
	cl, err := q.Reserve(ctx, 8)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := q.TryPut([]byte("x")); ok || err != nil {
		t.Fatalf("TryPut during a claim = %v, %v", ok, err)
	}
	errs := make(chan error, 1)
	go func() { errs <- q.Put(ctx, []byte("after")) }()
	waitFor(t, "a Put waiting for the claim", func() bool { return q.plock.Sleepers().Load()&1 != 0 })
	copy(cl.Bytes(), "claimed!")
	cl.Commit()
	if err := woken(t, errs, "Put after Commit"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"claimed!", "after"} {
		if m, err := q.Get(ctx); err != nil || string(m) != want {
			t.Fatalf("Get = %q, %v; want %q", m, err, want)
		}
	}
	var zero Claim
	if zero.Commit() == nil || zero.Bytes() != nil {
		t.Fatal("the zero Claim is not ended")
	}
	if _, err := q.Reserve(ctx, q.MaxMsg()+1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Reserve over MaxMsg = %v", err)
	}
}

// TestTryGetStrict: a Get asleep on the empty queue holds the consumer
// lock; a message arrives whose wake-up is lost. TryGet must not call the
// queue empty while it holds that message: it takes it, or wakes the Get,
// which takes it before TryGet reports empty.
func TestTryGetStrict(t *testing.T) {
	ctx := t.Context()
	q := spinning(heapQueue(t, 1024, nil), -1)
	errs := make(chan error, 1)
	sleeper(t, q, q.dataFx, errs, func() error { _, err := q.Get(ctx); return err })
	q.faults.skipWake = func() bool { return true }
	q.Put(ctx, []byte("m"))
	q.faults.skipWake = nil
	q.faults.tryPatience = time.Hour // no scheduler delay is a stalled holder
	h := q.head.Load()
	_, ok, err := q.TryGet()
	if err != nil {
		t.Fatal(err)
	}
	// Empty is true only once the Get has taken the message: it stores
	// head before it lets go of the lock (its count of gets comes later).
	if !ok && q.head.Load() == h {
		t.Fatalf("TryGet reported empty with the message still in the queue (%+v)", q.Stats())
	}
	if ok {
		q.Put(ctx, []byte("m2")) // for the sleeping Get
	}
	if err := woken(t, errs, "Get"); err != nil {
		t.Fatal(err)
	}
}

// TestTryPutStrict: a Put stalled inside its write holds the producer lock
// of a queue with room: TryPut waits for it rather than report full. The
// test waits for TryPut to have found the lock busy and chosen to wait
// (tryRetry), with a patience no scheduler delay reaches, so a descheduled
// test goroutine cannot turn the third exception into a failure.
func TestTryPutStrict(t *testing.T) {
	ctx := t.Context()
	q := heapQueue(t, 1024, nil)
	stalled, resume := make(chan struct{}), make(chan struct{})
	q.faults.putCopied = func() { close(stalled); <-resume }
	var once sync.Once
	release := func() { once.Do(func() { close(resume) }) }
	defer release() // before Close waits for the stalled Put
	errs := make(chan error, 1)
	go func() { errs <- q.Put(ctx, []byte("first")) }()
	<-stalled
	q.faults.putCopied = nil
	retried := make(chan struct{}, 1)
	q.faults.tryPatience = time.Hour
	q.faults.tryRetry = func() {
		select {
		case retried <- struct{}{}:
		default:
		}
	}
	tried := make(chan bool, 1)
	go func() { ok, _ := q.TryPut([]byte("second")); tried <- ok }()
	select { // TryPut must find the lock busy and wait for its holder
	case <-retried:
	case ok := <-tried:
		t.Fatalf("TryPut returned %v while a Put held the lock of a queue with room", ok)
	}
	release()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if !woken(t, tried, "TryPut") {
		t.Fatal("TryPut reported full on a queue with room")
	}
}

// TestBatchAllocs: every batch and zero-copy path allocates nothing.
func TestBatchAllocs(t *testing.T) {
	ctx := context.Background()
	q := heapQueue(t, 1<<16, nil)
	tq, err := NewTyped[[4]uint64](q)
	if err != nil {
		t.Fatal(err)
	}
	msgs, bufs := newBufs(32, 64), newBufs(32, 64)
	vals := make([][4]uint64, 32)
	fn := func([]byte) error { return nil }
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"PutBatch+Read", func() { q.PutBatch(ctx, msgs); q.Read(ctx, 32, fn) }},
		{"TryPutBatch+TryRead", func() { q.TryPutBatch(msgs); q.TryRead(32, fn) }},
		{"PutBatch+GetBatch", func() { q.PutBatch(ctx, msgs); q.GetBatch(ctx, bufs) }},
		{"Reserve+Commit", func() {
			cl, _ := q.Reserve(ctx, 64)
			copy(cl.Bytes(), msgs[0])
			cl.Commit()
			q.Read(ctx, 1, fn)
		}},
		{"Reserve+Abort", func() { cl, _ := q.Reserve(ctx, 64); cl.Abort() }},
		{"Typed", func() { tq.PutBatch(ctx, vals); tq.GetBatch(ctx, vals) }},
		{"TypedTry", func() { tq.TryPutBatch(vals); tq.TryGetBatch(vals) }},
	} {
		if a := testing.AllocsPerRun(100, c.f); a != 0 {
			t.Errorf("%s: %v allocations", c.name, a)
		}
	}
	if q.Len() != 0 {
		t.Fatalf("Len %d", q.Len())
	}
}

// TestTypedBatch: fixed-size and gob values through the batch forms; a
// corrupt message first is ErrCorrupt and consumed, later it stays.
func TestTypedBatch(t *testing.T) {
	ctx := t.Context()
	q := heapQueue(t, 4096, nil)
	type pt struct {
		X, Y int32
		OK   bool
	}
	tq, _ := NewTyped[pt](q)
	in := []pt{{1, 2, true}, {3, 4, false}, {5, 6, true}}
	if n, err := tq.PutBatch(ctx, in); n != 3 || err != nil {
		t.Fatal(n, err)
	}
	q.Put(ctx, []byte("bad"))
	out := make([]pt, 8)
	if n, err := tq.GetBatch(ctx, out); n != 3 || err != nil || out[2] != in[2] {
		t.Fatalf("GetBatch = %d, %v, %v", n, err, out[:n])
	}
	if n, err := tq.GetBatch(ctx, out); n != 0 || !errors.Is(err, ErrCorrupt) || q.Len() != 0 {
		t.Fatalf("GetBatch of a corrupt message = %d, %v, Len %d", n, err, q.Len())
	}
	gq, _ := NewTyped[string](q)
	if n, err := gq.PutBatch(ctx, []string{"a", "bc"}); n != 2 || err != nil {
		t.Fatal(n, err)
	}
	s := make([]string, 4)
	if n, err := gq.GetBatch(ctx, s); n != 2 || err != nil || s[1] != "bc" {
		t.Fatalf("gob GetBatch = %d, %v, %q", n, err, s)
	}
}

// putMixed puts n messages of producer p, cycling through Put, PutBatch,
// TryPutBatch, Reserve+Commit and Reserve+Abort (which adds nothing).
func putMixed(ctx context.Context, q *Queue, p, n int) error {
	bufs := newBufs(8, 128)
	for s := 0; s < n; {
		k := min(1+s%7, n-s)
		var err error
		switch s % 5 {
		case 0:
			err = q.Put(ctx, makeMsg(bufs[0], p, uint64(s)))
			k = 1
		case 1, 2:
			_, err = q.PutBatch(ctx, batchOf(bufs, p, uint64(s), k))
		case 3:
			if ok, terr := q.TryPutBatch(batchOf(bufs, p, uint64(s), k)); !ok {
				k, err = 0, terr
			}
		case 4:
			if s%3 == 0 { // an aborted claim first: it adds nothing
				var cl Claim
				if cl, err = q.Reserve(ctx, 8); err != nil {
					return err
				}
				cl.Abort()
			}
			m := makeMsg(bufs[0], p, uint64(s))
			var cl Claim
			if cl, err = q.Reserve(ctx, len(m)); err == nil {
				copy(cl.Bytes(), m)
				err = cl.Commit()
				k = 1
			}
		}
		if err != nil {
			return err
		}
		s += k
	}
	return nil
}

// getMixed takes messages until EOF into c, cycling through GetInto, Read
// and GetBatch.
func getMixed(ctx context.Context, q *Queue, c *checker) error {
	bufs := newBufs(5, 128)
	for i := 0; ; i++ {
		var err error
		switch i % 3 {
		case 0:
			var n int
			if n, err = q.GetInto(ctx, bufs[0][:cap(bufs[0])]); err == nil {
				err = c.add(bufs[0][:n])
			}
		case 1:
			_, err = q.Read(ctx, 1+i%6, c.add)
		case 2:
			var n int
			n, err = q.GetBatch(ctx, bufs)
			for _, b := range bufs[:n] {
				if err == nil {
					err = c.add(b)
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// TestHeapMPMCMixed: 4 producers and 2 consumers as goroutines over a heap
// queue, with batches, claims, Read and GetBatch mixed in: every message
// exactly once, in order per producer.
func TestHeapMPMCMixed(t *testing.T) {
	const producers, consumers, per = 4, 2, 20000
	ctx := t.Context()
	q := heapQueue(t, 4096, nil)
	var pw, cw sync.WaitGroup
	for p := range producers {
		pw.Go(func() {
			if err := putMixed(ctx, q, p, per); err != nil {
				t.Error(err)
			}
		})
	}
	checks := make([]*checker, consumers)
	for c := range consumers {
		checks[c] = newChecker(producers, per)
		cw.Go(func() {
			if err := getMixed(ctx, q, checks[c]); err != nil {
				t.Error(err)
				q.Shutdown() // the producers stop rather than wait for room
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
	if st := q.Stats(); st.Puts != producers*per || st.Gets != st.Puts || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// FuzzBatch decodes an arbitrary queue image whose seeds hold batches
// (with paddings among their records), then reads it with TryRead and
// GetBatch and writes batches and claims into it: errors are fine (a
// corrupt record is ErrCorrupt), panics and hangs are not, and every
// message Read passes to fn lies inside the ring. mode is FuzzQueue's.
func FuzzBatch(f *testing.F) {
	q, _ := NewHeap(256, nil)
	moveTo(q, 200)
	q.PutBatch(f.Context(), newBufs(4, 40)) // a padding inside
	q.Put(f.Context(), []byte("one"))
	seed := append([]byte(nil), q.Segment().Bytes()...)
	moveTo(q, 232)
	q.PutBatch(f.Context(), newBufs(3, 40)) // a padding first
	seed2 := append([]byte(nil), q.Segment().Bytes()...)
	q.Close()
	for _, s := range [][]byte{seed, seed2} {
		f.Add(s, uint8(0), uint64(0))
		f.Add(s, uint8(1), uint64(0))
		f.Add(s, uint8(5), uint64(200))
	}
	dead := deadToken(f)
	f.Fuzz(func(t *testing.T, image []byte, mode uint8, cached uint64) {
		q := fuzzAttach(t, image, mode, cached, dead)
		if q == nil {
			return
		}
		defer q.Close()
		ring := q.ring
		bufs := newBufs(4, 64)
		done, cancel := context.WithCancel(t.Context())
		cancel()
		for i := range 4 {
			q.TryRead(1+i, func(m []byte) error {
				if len(m) > 0 {
					first := uintptr(unsafe.Pointer(&m[0])) - uintptr(unsafe.Pointer(&ring[0]))
					if first+uintptr(len(m)) > uintptr(len(ring)) {
						t.Fatalf("Read passed %d bytes at ring offset %d of %d", len(m), first, len(ring))
					}
				}
				return nil
			})
			if _, err := q.TryPutBatch(bufs[:i]); err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrShutdown) {
				t.Fatalf("TryPutBatch: %v", err)
			}
			for j := range bufs {
				bufs[j] = bufs[j][:cap(bufs[j])]
			}
			q.GetBatch(done, bufs[:1+i%4]) // done: it never waits
		}
		if mode&8 == 0 {
			q.Shutdown()
			q.TryRead(4, func([]byte) error { return nil })
		}
	})
}

// TestShutdownWaitsForClaim: Shutdown, from another goroutine, waits for
// the open claim (asleep on the producer lock) without shutting the queue
// down; the claim's Commit then publishes, and the message is drained
// before io.EOF.
func TestShutdownWaitsForClaim(t *testing.T) {
	ctx := t.Context()
	q := spinning(heapQueue(t, 1024, nil), -1)
	cl, err := q.Reserve(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Abort()
	copy(cl.Bytes(), "held")
	waits := q.waits.Load()
	done := make(chan error, 1)
	go func() { done <- q.Shutdown() }()
	waitFor(t, "Shutdown asleep on the claim", func() bool { return q.waits.Load() > waits })
	if q.IsShutdown() {
		t.Fatal("Shutdown did not wait for the open claim")
	}
	if err := cl.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := woken(t, done, "Shutdown"); err != nil {
		t.Fatal(err)
	}
	if m, err := q.Get(ctx); string(m) != "held" || err != nil {
		t.Fatalf("Get = %q, %v; want the committed message", m, err)
	}
	if _, err := q.Get(ctx); err != io.EOF {
		t.Fatalf("Get after the drain = %v; want io.EOF", err)
	}
}

// TestCloseWaitsForRead: Close of the handle of a Read inside fn ends the
// handle for new calls at once but returns only after the Read (fn still
// sees its message, mapped), whose message is taken (another handle sees
// the queue empty).
func TestCloseWaitsForRead(t *testing.T) {
	ctx := t.Context()
	q := namedQueue(t, 1024, nil)
	other, err := Open(q.Segment().Name())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := q.Put(ctx, []byte("m")); err != nil {
		t.Fatal(err)
	}
	inFn, resume := make(chan struct{}), make(chan struct{})
	read := make(chan error, 1)
	go func() {
		n, err := q.Read(ctx, 4, func(m []byte) error {
			close(inFn)
			<-resume
			if string(m) != "m" { // still mapped: Close waited
				return fmt.Errorf("message %q inside fn after Close began", m)
			}
			return nil
		})
		if err == nil && n != 1 {
			err = fmt.Errorf("read %d messages, want 1", n)
		}
		read <- err
	}()
	<-inFn
	closed := make(chan error, 1)
	go func() { closed <- q.Close() }()
	waitFor(t, "Close begun", func() bool { return !q.open.Load() })
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v while Read was inside fn", err)
	default:
	}
	close(resume)
	if err := woken(t, read, "Read"); err != nil {
		t.Fatal(err)
	}
	if err := woken(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
	if n := other.Len(); n != 0 {
		t.Fatalf("Len = %d after the Read; want 0", n)
	}
}
