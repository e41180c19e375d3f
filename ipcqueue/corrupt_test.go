//go:build linux

package ipcqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/ipckit/ipckit/shm"
)

// attachBytes builds a queue handle over a heap segment holding image.
func attachBytes(image []byte) (*Queue, error) {
	seg, err := shm.KindQueue.NewHeap(len(image))
	if err != nil {
		return nil, err
	}
	copy(seg.Bytes(), image)
	return attach(seg)
}

// TestCorruptHeader flips fields of the control block and of records, and
// expects ErrCorrupt, never a panic.
func TestCorruptHeader(t *testing.T) {
	q := heapQueue(t, 1024, nil)
	ctx := t.Context()
	q.Put(ctx, []byte("hello"))
	good := append([]byte(nil), q.Segment().Bytes()...)
	le := binary.LittleEndian
	for _, c := range []struct {
		name string
		edit func(b []byte)
		open bool // the error comes from attaching, not from Get/Put
	}{
		{"magic", func(b []byte) { b[offMagic] ^= 1 }, true},
		{"version", func(b []byte) { le.PutUint32(b[offVersion:], 9) }, true},
		{"version 3", func(b []byte) { le.PutUint32(b[offVersion:], 3) }, true}, // pid-based lock words
		{"ring size", func(b []byte) { le.PutUint64(b[offCap:], 1<<30) }, true},
		{"checksum", func(b []byte) { b[offCRC] ^= 1 }, true},
		{"head misaligned", func(b []byte) { le.PutUint64(b[offHead:], 3) }, false},
		{"tail far ahead", func(b []byte) { le.PutUint64(b[offTail:], 1<<40); le.PutUint64(b[offFreed:], 0) }, false},
		{"record length", func(b []byte) { le.PutUint32(b[ctlSize:], flagCommit|5000) }, false},
		{"record tag", func(b []byte) { le.PutUint32(b[ctlSize+4:], 77) }, false},
		{"padding length", func(b []byte) { le.PutUint32(b[ctlSize:], flagCommit|flagPadding|8) }, false},
		{"producer lock word", func(b []byte) { le.PutUint64(b[offPLock:], 3<<62|5) }, false},
		{"consumer lock word", func(b []byte) { le.PutUint64(b[offCLock:], 1<<62|1<<63) }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := append([]byte(nil), good...)
			c.edit(img)
			q, err := attachBytes(img)
			if c.open {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("attach = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			_, _, gerr := q.TryGet()
			_, perr := q.TryPut(make([]byte, 200))
			for range 8 {
				if perr == nil {
					_, perr = q.TryPut(make([]byte, 200))
				}
			}
			if !errors.Is(gerr, ErrCorrupt) && !errors.Is(perr, ErrCorrupt) {
				t.Fatalf("TryGet = %v, TryPut = %v, want ErrCorrupt", gerr, perr)
			}
		})
	}
}

// TestCorruptLockWord: a lock word that no lock can hold (a flag with no
// holder, bits beyond a liveness token) is ErrCorrupt from the blocking
// calls too, at once, never a wait; Shutdown shuts the queue down all the
// same and reports it.
func TestCorruptLockWord(t *testing.T) {
	for _, c := range []struct {
		name string
		off  int
		word uint64
	}{
		{"producer", offPLock, 1 << 62},
		{"consumer", offCLock, 1<<63 | 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := heapQueue(t, 1024, nil)
			u64At(q.ctl, c.off).Store(c.word)
			var err error
			if c.off == offPLock {
				err = q.Put(t.Context(), []byte("x"))
			} else {
				_, err = q.Get(t.Context())
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s lock word %#x: %v, want ErrCorrupt", c.name, c.word, err)
			}
			if c.off == offPLock {
				if err := q.Shutdown(); !errors.Is(err, ErrCorrupt) || !q.IsShutdown() {
					t.Fatalf("Shutdown = %v, IsShutdown %v", err, q.IsShutdown())
				}
			}
			if w := u64At(q.ctl, c.off).Load(); w != c.word {
				t.Fatalf("the lock word changed to %#x", w)
			}
		})
	}
}

// noPanic runs f and turns a panic into an error.
func noPanic(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// TestCorruptTail: a misaligned tail (a corrupt or hostile segment) is
// ErrCorrupt from every producer path, never a panic: on Put's fast path
// (the cached head not stale, so the tail is not otherwise checked), and
// in the repair of a dead producer's lock reached from TryPut, Put,
// Stats, Get and Shutdown.
func TestCorruptTail(t *testing.T) {
	le := binary.LittleEndian
	t.Run("fast path", func(t *testing.T) {
		q := heapQueue(t, 1024, nil)
		b := q.Segment().Bytes()
		for _, off := range []int{offTail, offHead, offFreed} {
			le.PutUint64(b[off:], 1000)
		}
		q.cachedHead = 1000
		le.PutUint64(b[offTail:], 1020)
		var ok bool
		err := noPanic(func() (err error) { ok, err = q.TryPut(make([]byte, 24)); return })
		if ok || !errors.Is(err, ErrCorrupt) {
			t.Fatalf("TryPut = %v, %v; want ErrCorrupt", ok, err)
		}
		if err := noPanic(func() error { return q.Put(t.Context(), make([]byte, 24)) }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Put = %v; want ErrCorrupt", err)
		}
	})
	dead := deadToken(t)
	for _, c := range []struct {
		name string
		op   func(q *Queue) error
	}{
		{"TryPut", func(q *Queue) error { _, err := q.TryPut([]byte("x")); return err }},
		{"Put", func(q *Queue) error { return q.Put(t.Context(), []byte("x")) }},
		{"Stats", func(q *Queue) error { q.Stats(); return ErrCorrupt }},
		{"Shutdown", func(q *Queue) error { return q.Shutdown() }},
	} {
		t.Run("dead producer/"+c.name, func(t *testing.T) {
			q := heapQueue(t, 1024, nil)
			b := q.Segment().Bytes()
			le.PutUint64(b[offTail:], 1020)
			u64At(q.ctl, offPLock).Store(dead)
			if err := noPanic(func() error { return c.op(q) }); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s = %v; want ErrCorrupt", c.name, err)
			}
			if w := u64At(q.ctl, offPLock).Load(); w != 0 && w != dead {
				t.Fatalf("producer lock left held by %#x", w)
			}
		})
	}
}

// FuzzQueue decodes an arbitrary control block and ring, then runs a few
// TryGet, TryPut, Stats and Len calls and a Shutdown: errors are fine, panics
// and hangs are not. mode selects the state the handle starts from, so
// that the fuzzer reaches the paths a plain image does not: bit 0 gives
// the producer lock to a dead process (Put, Stats and Shutdown then repair
// from whatever tail the image holds), bit 1 the consumer lock, bit 2 sets
// the handle's cached head to cached (Put's fast path trusts it), bit 3
// keeps the image's lock words as they are (then no Shutdown: a live holder
// would block it).
func FuzzQueue(f *testing.F) {
	q, _ := NewHeap(256, nil)
	q.Put(f.Context(), []byte("seed"))
	q.Put(f.Context(), make([]byte, 60))
	seed := append([]byte(nil), q.Segment().Bytes()...)
	q.Close()
	f.Add(seed, uint8(0), uint64(0))
	f.Add(seed, uint8(1), uint64(0))
	f.Add(seed, uint8(7), uint64(64))
	misaligned := append([]byte(nil), seed...)
	binary.LittleEndian.PutUint64(misaligned[offTail:], 252)
	f.Add(misaligned, uint8(4), uint64(248))
	f.Add(misaligned, uint8(1), uint64(0))
	dead := deadToken(f)
	f.Fuzz(func(t *testing.T, image []byte, mode uint8, cached uint64) {
		fuzzOne(t, image, mode, cached, dead)
	})
}

func fuzzOne(t *testing.T, image []byte, mode uint8, cached, dead uint64) {
	q := fuzzAttach(t, image, mode, cached, dead)
	if q == nil {
		return
	}
	defer q.Close()
	buf := make([]byte, 64)
	for i := range 8 {
		q.Stats()
		q.TryGet()
		q.TryGetInto(buf)
		q.TryPut(buf[:i*9])
		q.Len()
	}
	if mode&8 == 0 {
		q.Shutdown()
		q.TryGet()
	}
}

// fuzzAttach attaches a handle to image as mode says (see FuzzQueue), or
// returns nil if the image is refused (with ErrCorrupt, or the test fails).
func fuzzAttach(t *testing.T, image []byte, mode uint8, cached, dead uint64) *Queue {
	{
		if len(image) < ctlSize+minRing {
			return nil
		}
		le := binary.LittleEndian
		if mode&8 == 0 {
			le.PutUint64(image[offPLock:], 0)
			le.PutUint64(image[offCLock:], 0)
			if mode&1 != 0 {
				le.PutUint64(image[offPLock:], dead)
			}
			if mode&2 != 0 {
				le.PutUint64(image[offCLock:], dead)
			}
		}
		// Repair the checksum often enough to reach the ring.
		if image[offCRC+3]&1 == 0 {
			writeConfig(image[:ctlSize], config{le.Uint64(image[offCap:]), le.Uint64(image[offMaxMsg:])})
		}
		q, err := attachBytes(image)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("attach error %v is not ErrCorrupt", err)
			}
			return nil
		}
		if mode&4 != 0 {
			q.cachedHead = cached
		}
		return q
	}
}

func TestDecodeHeader(t *testing.T) {
	const c, maxMsg = 1024, 200
	for _, x := range []struct {
		w, pos uint64
		kind   int
		ok     bool
	}{
		{0, 8, recEmpty, true},
		{mkHeader(8, 10, false), 8, recMessage, true},
		{mkHeader(8, 10, false), 16, 0, false},                        // wrong tag
		{mkHeader(8, 201, false), 8, 0, false},                        // over maxMsg
		{mkHeader(1016, 0, true), 1016, recPadding, true},             // padding to the end
		{mkHeader(1000, 0, true), 1000, 0, false},                     // padding short of the end
		{mkHeader(1016, 10, false), 1016, 0, false},                   // runs past the end
		{mkHeader(8, 10, false) &^ flagCommit, 8, 0, false},           // not committed
		{mkHeader(^uint64(7), 0, true), ^uint64(7), recPadding, true}, // wrapped position
	} {
		kind, _, err := decodeHeader(x.w, x.pos, c, maxMsg)
		if (err == nil) != x.ok || (x.ok && kind != x.kind) {
			t.Errorf("decodeHeader(%#x, %d) = %d, %v", x.w, x.pos, kind, err)
		}
	}
}

// TestDroppedAfterPublish: a producer that dies after publishing tail but
// before unlocking has delivered its message: it is not counted as
// dropped. One that dies after claiming space and before publishing is.
func TestDroppedAfterPublish(t *testing.T) {
	dead := deadToken(t)
	q := heapQueue(t, 1024, nil)
	if err := q.Put(t.Context(), []byte("delivered")); err != nil {
		t.Fatal(err)
	}
	u64At(q.ctl, offPLock).Store(dead) // died between publishing tail and unlocking
	if st := q.Stats(); st.Dropped != 0 {
		t.Fatalf("Stats = %+v: a delivered message counted as dropped", st)
	}
	if m, err := q.Get(t.Context()); err != nil || string(m) != "delivered" {
		t.Fatalf("Get = %q, %v", m, err)
	}

	// Died after claiming, before writing anything else.
	q.claim.Store(q.tail.Load() + 16)
	u64At(q.ctl, offPLock).Store(dead)
	if st := q.Stats(); st.Dropped != 1 {
		t.Fatalf("Stats = %+v: want one dropped message", st)
	}
	if ok, err := q.TryPut([]byte("next")); !ok || err != nil {
		t.Fatalf("TryPut after the repair = %v, %v", ok, err)
	}
	if m, err := q.Get(t.Context()); err != nil || string(m) != "next" {
		t.Fatalf("Get = %q, %v", m, err)
	}
}
