package ipcpipe

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/robust"
)

// heapPipe returns the ends of a heap pipe, closed at the test's end.
func heapPipe(t testing.TB, duplex bool, opts *Options) (*Conn, *Conn) {
	t.Helper()
	a, b, err := NewHeap(duplex, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// slowBound bounds what must happen promptly: only a hang misses it.
const slowBound = 10 * time.Second

// within returns what done delivers, failing the test after slowBound.
func within[T any](t testing.TB, done <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-done:
		return v
	case <-time.After(slowBound):
		t.Fatalf("%s did not return within %v", what, slowBound)
		panic("unreachable")
	}
}

// asleep waits until n goroutines of this process sleep on a futex inside
// fn (as runtime.Stack names it).
func asleep(t testing.TB, n int, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		buf = buf[:runtime.Stack(buf[:cap(buf)], true)]
		k := 0
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "internal/futex.Wait(") && strings.Contains(g, fn) {
				k++
			}
		}
		if k >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines asleep in %s, want %d", k, fn, n)
		}
	}
}

// stamp fills a message of n bytes for sequence number s, checksummed.
func stamp(s uint64, n int) []byte {
	m := make([]byte, max(n, 12))
	binary.LittleEndian.PutUint64(m, s)
	for i := 12; i < len(m); i++ {
		m[i] = byte(s*7 + uint64(i))
	}
	binary.LittleEndian.PutUint32(m[8:], crc32.ChecksumIEEE(m[12:])^uint32(s))
	return m
}

// checkStamp returns the sequence number of a stamped message, or an error
// if it is torn.
func checkStamp(m []byte) (uint64, error) {
	if len(m) < 12 {
		return 0, fmt.Errorf("%d-byte message", len(m))
	}
	s := binary.LittleEndian.Uint64(m)
	if binary.LittleEndian.Uint32(m[8:]) != crc32.ChecksumIEEE(m[12:])^uint32(s) {
		return s, fmt.Errorf("message %d of %d bytes is torn", s, len(m))
	}
	return s, nil
}

// TestStream: both directions at once through small rings, messages of
// many sizes (padding at the ring's end, full rings, sleeps on both
// sides), arrive whole, once and in order. Under -race, the heap pipe
// shows every access ordered.
func TestStream(t *testing.T) {
	for _, spin := range []time.Duration{0, -1} {
		t.Run(fmt.Sprint("spin=", spin), func(t *testing.T) {
			a, b := heapPipe(t, true, &Options{Size: 256, MaxMsg: 120})
			a.SetSpin(spin)
			b.SetSpin(spin)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			const n = 5000
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for _, c := range []*Conn{a, b} {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for s := range uint64(n) {
						if err := c.Send(ctx, stamp(s, int(s%120))); err != nil {
							errs <- err
							cancel()
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					for want := range uint64(n) {
						m, err := c.Recv(ctx)
						if err == nil {
							var s uint64
							s, err = checkStamp(m)
							if err == nil && (s != want || len(m) != max(int(s%120), 12)) {
								err = fmt.Errorf("got message %d of %d bytes, want %d", s, len(m), want)
							}
						}
						if err != nil {
							errs <- err
							cancel()
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
}

// TestCloseEOF: the other end receives what was sent before Close, then
// io.EOF (not ErrPeerDied), and its sends fail with io.ErrClosedPipe; the
// closed handle's own calls fail with os.ErrClosed.
func TestCloseEOF(t *testing.T) {
	ctx := t.Context()
	a, b := heapPipe(t, true, nil)
	for i := range 3 {
		if err := a.Send(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if m, err := b.Recv(ctx); err != nil || !bytes.Equal(m, []byte{byte(i)}) {
			t.Fatalf("Recv %d after Close = %v, %v", i, m, err)
		}
	}
	if _, err := b.Recv(ctx); err != io.EOF {
		t.Fatalf("Recv after the drain = %v, want io.EOF itself", err)
	}
	if ok, err := b.Poll(0); !ok || err != nil {
		t.Fatalf("Poll at EOF = %v, %v; want true (Recv would not wait)", ok, err)
	}
	if err := b.Send(ctx, []byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Send to a closed end = %v, want io.ErrClosedPipe", err)
	}
	if err := a.Send(ctx, []byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Send on a closed handle = %v, want os.ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// fill sends 8-byte messages from c until its pipe is full.
func fill(t testing.TB, c *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	for {
		err := c.Send(ctx, []byte("12345678"))
		if errors.Is(err, context.DeadlineExceeded) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestCloseWakesPeer: a Recv asleep on an empty pipe returns io.EOF when
// the other end is closed; a Send asleep on a full pipe returns
// io.ErrClosedPipe.
func TestCloseWakesPeer(t *testing.T) {
	ctx := t.Context()
	a, b := heapPipe(t, true, &Options{Size: 64})
	b.SetSpin(-1)
	got := make(chan error, 1)
	go func() { _, err := b.Recv(ctx); got <- err }()
	asleep(t, 1, "ipcpipe.(*Conn).recv")
	unwoken := robust.Unwoken()
	a.Close()
	if err := within(t, got, "Recv"); err != io.EOF {
		t.Fatalf("Recv woken by Close = %v, want io.EOF", err)
	}
	if robust.Unwoken() != unwoken {
		t.Fatal("the Recv was found by its slow check, not woken by Close")
	}

	a, b = heapPipe(t, true, &Options{Size: 64})
	b.SetSpin(-1)
	fill(t, b)
	sent := make(chan error, 1)
	go func() { sent <- b.Send(ctx, []byte("x")) }()
	asleep(t, 1, "ipcpipe.(*Conn).waitSpace")
	unwoken = robust.Unwoken()
	a.Close()
	if err := within(t, sent, "Send"); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Send woken by Close = %v, want io.ErrClosedPipe", err)
	}
	if robust.Unwoken() != unwoken {
		t.Fatal("the Send was found by its slow check, not woken by Close")
	}
}

// TestCloseHandleWakes: Close of a handle wakes its own blocked Recv with
// os.ErrClosed.
func TestCloseHandleWakes(t *testing.T) {
	a, _ := heapPipe(t, true, nil)
	a.SetSpin(-1)
	got := make(chan error, 1)
	go func() { _, err := a.Recv(context.Background()); got <- err }()
	asleep(t, 1, "ipcpipe.(*Conn).recv")
	unwoken := robust.Unwoken()
	a.Close()
	if err := within(t, got, "Recv"); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Recv on a handle closed under it = %v, want os.ErrClosed", err)
	}
	if robust.Unwoken() != unwoken {
		t.Fatal("the Recv was found by its slow check, not woken by Close")
	}
}

// TestOneWay: Python's Pipe(duplex=False): the first end only receives,
// the second only sends.
func TestOneWay(t *testing.T) {
	ctx := t.Context()
	r, w := heapPipe(t, false, nil)
	if r.Duplex() {
		t.Fatal("a one-way pipe says it is duplex")
	}
	if err := r.Send(ctx, []byte("x")); !errors.Is(err, ErrOneWay) {
		t.Fatalf("Send on the receiving end = %v, want ErrOneWay", err)
	}
	if _, err := w.Recv(ctx); !errors.Is(err, ErrOneWay) {
		t.Fatalf("Recv on the sending end = %v, want ErrOneWay", err)
	}
	if err := w.Send(ctx, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if m, err := r.Recv(ctx); err != nil || string(m) != "hi" {
		t.Fatalf("Recv = %q, %v", m, err)
	}
	if got, want := r.Segment().Size(), ctlSize+DefaultSize; got != want {
		t.Fatalf("a one-way pipe takes %d bytes, want %d (one ring)", got, want)
	}
}

// TestPoll: Python's poll(timeout): false on an empty pipe, at once or
// after the timeout; true once a message is there (which stays there);
// PollContext returns ctx's error when cancelled.
func TestPoll(t *testing.T) {
	ctx := t.Context()
	a, b := heapPipe(t, true, nil)
	if ok, err := b.Poll(0); ok || err != nil {
		t.Fatalf("Poll(0) on an empty pipe = %v, %v", ok, err)
	}
	start := time.Now()
	if ok, err := b.Poll(20 * time.Millisecond); ok || err != nil {
		t.Fatalf("Poll(20ms) on an empty pipe = %v, %v", ok, err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("Poll(20ms) returned after %v", d)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.SetSpin(-1)
	go func() { _, err := b.PollContext(cctx); done <- err }()
	asleep(t, 1, "ipcpipe.(*Conn).recv")
	cancel()
	if err := within(t, done, "PollContext"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled PollContext = %v", err)
	}
	polled := make(chan bool, 1)
	go func() { ok, _ := b.Poll(-1); polled <- ok }()
	a.Send(ctx, []byte("m"))
	if !within(t, polled, "Poll(-1)") {
		t.Fatal("Poll(-1) = false with a message sent")
	}
	if ok, err := b.Poll(0); !ok || err != nil {
		t.Fatalf("Poll(0) after Poll(-1) = %v, %v: Poll must leave the message", ok, err)
	}
	if m, err := b.Recv(ctx); err != nil || string(m) != "m" {
		t.Fatalf("Recv after Poll = %q, %v", m, err)
	}
}

// TestCancel: a Recv or Send whose ctx is cancelled while it waits
// returns ctx.Err() and changes nothing.
func TestCancel(t *testing.T) {
	a, b := heapPipe(t, true, &Options{Size: 64})
	a.SetSpin(-1)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := a.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv past its deadline = %v", err)
	}
	fill(t, a)
	for i := range 64 / 16 { // a ring holds R bytes of records
		if m, err := b.Recv(t.Context()); err != nil || string(m) != "12345678" {
			t.Fatalf("Recv %d = %q, %v", i, m, err)
		}
	}
	if ok, _ := b.Poll(0); ok {
		t.Fatal("the cancelled Send left a message")
	}
}

// TestTooLarge: a message over the maximum is refused, nothing sent; a
// short RecvInto buffer leaves the message.
func TestTooLarge(t *testing.T) {
	ctx := t.Context()
	a, b := heapPipe(t, true, &Options{Size: 1024, MaxMsg: 100})
	if err := a.Send(ctx, make([]byte, 101)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Send of 101 bytes = %v, want ErrTooLarge", err)
	}
	a.Send(ctx, make([]byte, 100))
	if n, err := b.RecvInto(ctx, make([]byte, 10)); n != 100 || !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("RecvInto a short buffer = %d, %v", n, err)
	}
	tctx, cancel := context.WithTimeout(ctx, slowBound)
	defer cancel()
	if n, err := b.RecvInto(tctx, make([]byte, 100)); n != 100 || err != nil {
		t.Fatalf("RecvInto after the short buffer = %d, %v: the message must stay", n, err)
	}
	for _, o := range []*Options{{Size: -1}, {Size: 1024, MaxMsg: 1024}, {MaxMsg: -1}} {
		if _, _, err := NewHeap(true, o); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("NewHeap(%+v) = %v, want os.ErrInvalid", *o, err)
		}
	}
}

type msg struct {
	Name string
	N    []int
}

// TestTyped: values travel with ipcqueue.Typed's codec: fixed-size ones
// as bytes without allocating, others as gob, a nil pointer as nil.
func TestTyped(t *testing.T) {
	ctx := t.Context()
	a, b := heapPipe(t, true, nil)
	fa, _ := NewTyped[[2]int64](a)
	fb, _ := NewTyped[[2]int64](b)
	if n := testing.AllocsPerRun(100, func() {
		fa.Send(ctx, [2]int64{1, 2})
		if v, err := fb.Recv(ctx); err != nil || v != [2]int64{1, 2} {
			t.Fatalf("Recv = %v, %v", v, err)
		}
	}); n != 0 {
		t.Errorf("fixed-size Send+Recv: %v allocs", n)
	}
	ga, _ := NewTyped[*msg](a)
	gb, _ := NewTyped[*msg](b)
	for _, v := range []*msg{{Name: "x", N: []int{1}}, nil} {
		if err := ga.Send(ctx, v); err != nil {
			t.Fatal(err)
		}
		got, err := gb.Recv(ctx)
		if err != nil || (got == nil) != (v == nil) || v != nil && got.Name != v.Name {
			t.Fatalf("Recv = %#v, %v; want %#v", got, err, v)
		}
	}
	a.Send(ctx, []byte("abc"))
	if _, err := fb.Recv(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a 3-byte message as [2]int64 = %v, want ErrCorrupt", err)
	}
	if _, err := NewTyped[[1 << 20]byte](a); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("NewTyped of a T over the maximum = %v", err)
	}
}

// TestCorrupt: impossible indexes and records are ErrCorrupt, never a
// panic or a hang.
func TestCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name string
		mess func(d *direction)
	}{
		{"tail past a lap", func(d *direction) { d.tail.Add(1 << 20) }},
		{"misaligned tail", func(d *direction) { d.tail.Add(3) }},
		{"length over the maximum", func(d *direction) { *word(d.ring, 0) = 1 << 30 }},
		{"length past tail", func(d *direction) { *word(d.ring, 0) = 40 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			a, b := heapPipe(t, true, &Options{Size: 1024})
			a.Send(ctx, []byte("hello"))
			tc.mess(a.out)
			if _, err := b.Recv(ctx); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Recv = %v, want ErrCorrupt", err)
			}
		})
	}
	a, _ := heapPipe(t, true, &Options{Size: 64})
	a.out.head.Store(1 << 20) // head ahead of tail
	for range 10 {
		if err := a.Send(t.Context(), make([]byte, 8)); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Send with head ahead of tail = %v, want ErrCorrupt", err)
			}
			return
		}
	}
	t.Fatal("Sends with head ahead of tail never failed")
}

// TestTakeWakesWriter: a Send asleep on a full pipe is woken by the first
// message taken, though the reader skips its fence there (less than R/8
// bytes taken, the ring not empty: see the layout's "Lazy fence").
func TestTakeWakesWriter(t *testing.T) {
	ctx := t.Context()
	a, b := heapPipe(t, true, &Options{Size: 1024})
	a.SetSpin(-1)
	fill(t, a)
	sent := make(chan error, 1)
	go func() { sent <- a.Send(ctx, []byte("12345678")) }()
	asleep(t, 1, "ipcpipe.(*Conn).waitSpace")
	unwoken := robust.Unwoken()
	if _, err := b.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	if recLen(8) >= b.fenceEvery || b.in.head.Load() == b.in.tail.Load() {
		t.Fatal("the take would fence by itself: the test does not reach the lazy path")
	}
	if err := within(t, sent, "Send"); err != nil {
		t.Fatal(err)
	}
	if robust.Unwoken() != unwoken {
		t.Fatal("the Send was found by its slow check, not woken by the take")
	}
}

// TestSpinnerProbe: a wait that slept does not raise the spin budget (a
// spinning end would hold the CPU its peer needs), and every probeEvery
// such waits the budget goes back to the maximum once.
func TestSpinnerProbe(t *testing.T) {
	var s spinner
	s.setMax(robust.DefaultSpin)
	never := func() bool { return false }
	for s.Budget() > robust.DefaultSpin/8 { // failed spins halve it
		if ok, _ := s.Spin(never); ok {
			t.Fatal("a spin on a never-ready condition succeeded")
		}
	}
	low := s.Budget()
	for i := 1; i < probeEvery; i++ {
		s.slept()
		if s.Budget() != low {
			t.Fatalf("budget %v after %d sleeps, want it left at %v", s.Budget(), i, low)
		}
	}
	s.slept()
	if s.Budget() != robust.DefaultSpin {
		t.Fatalf("budget %v after %d sleeps, want the maximum %v back", s.Budget(), probeEvery, robust.DefaultSpin)
	}
	s.setMax(-1)
	for range probeEvery {
		s.slept()
	}
	if s.Budget() != 0 {
		t.Fatalf("budget %v with spinning off", s.Budget())
	}
}
