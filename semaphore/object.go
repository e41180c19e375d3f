package semaphore

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// object is what every shared object holds: where it lives, and the
// bookkeeping that lets Close wake this process's waiters.
type object struct {
	_     noCopy
	seg   *shm.Segment
	off   int    // offset of the object in seg.Bytes()
	mem   []byte // seg.Bytes()[off : off+size]
	owned bool   // the object made or opened seg and closes it

	shut    atomic.Bool    // set by close, first: what calls check (a plain flag: Mutex.Unlock inlines)
	closer  robust.Closer  // closed by close, next: ends this process's waits
	mu      sync.Mutex     // orders enter against close
	waiters sync.WaitGroup // calls of this process blocked in shared memory
}

// closed reports whether close was called.
func (o *object) closed() bool { return o.shut.Load() }

// place checks that size bytes at off fit in seg and are 8-byte aligned.
// Its errors are the caller's: they wrap os.ErrInvalid.
func (o *object) place(seg *shm.Segment, off, size int) error {
	if err := supported(); err != nil {
		return err
	}
	if seg == nil {
		return fmt.Errorf("semaphore: nil segment: %w", os.ErrInvalid)
	}
	b := seg.Bytes()
	if off < 0 || off%8 != 0 {
		return fmt.Errorf("semaphore: offset %d, want a multiple of 8, at least 0: %w", off, os.ErrInvalid)
	}
	if size > len(b) || off > len(b)-size {
		return fmt.Errorf("semaphore: %d bytes at offset %d do not fit a %d-byte segment: %w", size, off, len(b), os.ErrInvalid)
	}
	o.seg, o.off, o.mem = seg, off, b[off:off+size:off+size]
	if !aligned8(o.mem) {
		return fmt.Errorf("semaphore: offset %d of a segment whose memory is not 8-byte aligned: %w", off, os.ErrInvalid)
	}
	return nil
}

// extend grows the placed object to size bytes, a size computed from a
// count read from shared memory (what): one that does not fit the segment
// is ErrCorrupt, not the caller's error.
func (o *object) extend(size int, what string) error {
	b := o.seg.Bytes()
	if size < 0 || size > len(b)-o.off {
		return fmt.Errorf("semaphore: %s take %d bytes at offset %d, which do not fit a %d-byte segment: %w", what, size, o.off, len(b), ErrCorrupt)
	}
	o.mem = b[o.off : o.off+size : o.off+size]
	return nil
}

// enter registers a blocking call, unless the handle is closed.
func (o *object) enter() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.shut.Load() {
		return os.ErrClosed
	}
	o.waiters.Add(1)
	return nil
}

func (o *object) leave() { o.waiters.Done() }

// close marks the handle closed, wakes this process's sleepers on the
// futex words words until none is left asleep (sleepers of other processes
// see a spurious wake), waits for this process's calls to leave, then
// releases the segment if the object owns it.
func (o *object) close(words ...*atomic.Uint32) error {
	o.mu.Lock()
	if o.shut.Load() {
		o.mu.Unlock()
		return nil
	}
	// Under mu: an enter that comes after sees the handle closed, and
	// every call that entered before is woken (robust.Closer).
	o.shut.Store(true)
	o.closer.Close(words...)
	o.mu.Unlock()
	o.waiters.Wait()
	if o.owned {
		return o.seg.Close()
	}
	return nil
}

// Handles

type wire struct {
	Seg *shm.Segment
	Off int
}

func (o *object) encode() ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(wire{Seg: o.seg, Off: o.off}); err != nil {
		return nil, fmt.Errorf("semaphore: encode handle: %w", err)
	}
	return buf.Bytes(), nil
}

// decode opens the segment a handle names and calls attach with it; the
// object then owns the segment.
func decode(b []byte, attach func(seg *shm.Segment, off int) (*object, error)) error {
	var w wire
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&w); err != nil {
		return fmt.Errorf("semaphore: decode handle: %w", err)
	}
	if w.Seg == nil {
		return fmt.Errorf("semaphore: handle names no segment: %w", os.ErrInvalid)
	}
	o, err := attach(w.Seg, w.Off)
	if err != nil {
		w.Seg.Close()
		return err
	}
	o.owned = true
	return nil
}

// own places an object at offset 0 of a segment it made or opened.
func own[T any](at func(*shm.Segment, int) (*T, *object, error)) func(*shm.Segment, error) (*T, error) {
	return func(seg *shm.Segment, err error) (*T, error) {
		if err != nil {
			return nil, err
		}
		v, o, err := at(seg, 0)
		if err != nil {
			seg.Close()
			return nil, err
		}
		o.owned = true
		return v, nil
	}
}

// create makes the named segment name of kind k and size bytes, and builds
// an object at its offset 0 with build before the segment is published
// (shm's Kind.CreateInit): an Open racing it finds the object whole or
// finds no name, never one whose magic is not yet stored. The object owns
// the segment.
func create[T any](k shm.Kind, name string, size int, opts *shm.Options, build func(*shm.Segment, int) (*T, *object, error)) (*T, error) {
	var v *T
	var o *object
	_, err := k.CreateInit(name, size, opts, func(seg *shm.Segment) (err error) {
		v, o, err = build(seg, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	o.owned = true
	return v, nil
}

// lockRepair takes an internal lock (the guard of a Semaphore or Barrier)
// and, if its holder died holding it, runs repair with the lock held: an
// internal lock's taker repairs what it guards at once (robust.Options
// Internal), so the lock never records inconsistency. It returns nil with
// the lock held, or the lock's error without it: ctx.Err(), os.ErrClosed,
// or ErrCorrupt for an impossible lock word.
func lockRepair(ctx context.Context, l *robust.Lock, repair func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if l.TryLockFree() {
		return nil
	}
	err := l.Lock(ctx)
	if errors.Is(err, ErrOwnerDead) {
		repair()
		return nil
	}
	return err
}

// guardWait bounds how long a call that must not wait long (TryAcquire, a
// Barrier party giving up, a waiter's look at the holders) waits for a
// guard. Guard holders never block while they hold it, so a guard held
// for that long is a stopped process.
const guardWait = 100 * time.Millisecond

// lockGuard takes a guard as lockRepair does, waiting at most guardWait.
// A free guard is taken without arming a timer: a waiter's periodic look
// at the holders calls it, and a timer left behind wakes an idle process
// once more.
func lockGuard(l *robust.Lock, repair func()) error {
	if l.TryLockFree() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), guardWait)
	defer cancel()
	return lockRepair(ctx, l, repair)
}

// newGuard returns the internal lock at the start of mem.
func (o *object) newGuard(mem []byte) (*robust.Lock, error) {
	l, err := robust.At(mem, &robust.Options{Internal: true, Closer: &o.closer})
	if err != nil {
		return nil, fmt.Errorf("semaphore: %w", err)
	}
	return l, nil
}

// noCopy makes go vet's copylocks check report copies of the types holding it.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
