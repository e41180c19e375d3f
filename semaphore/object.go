package semaphore

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/internal/proc"
	"github.com/ipckit/ipckit/shm"
)

// Timing of cross-process waits. A sleeper wakes at least every sleepSlice
// to re-check the shared state (and whether its handle was closed), and
// checks that the process it waits for is alive at most every checkEvery,
// so a dead holder is found within about checkEvery+sleepSlice.
const (
	sleepSlice = 50 * time.Millisecond
	checkEvery = 100 * time.Millisecond
)

// object is what every shared object holds: where it lives, and the
// bookkeeping that lets Close wake this process's waiters.
type object struct {
	_     noCopy
	seg   *shm.Segment
	off   int    // offset of the object in seg.Bytes()
	mem   []byte // seg.Bytes()[off : off+size]
	owned bool   // the object made or opened seg and closes it

	closed  atomic.Bool
	mu      sync.Mutex     // orders enter against close
	waiters sync.WaitGroup // calls of this process blocked in shared memory
}

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
	if o.closed.Load() {
		return os.ErrClosed
	}
	o.waiters.Add(1)
	return nil
}

func (o *object) leave() { o.waiters.Done() }

// close marks the handle closed, wakes this process's sleepers on the
// futex words words (others see a spurious wake), waits for them to leave,
// then releases the segment if the object owns it.
func (o *object) close(words ...*atomic.Uint32) error {
	o.mu.Lock()
	if o.closed.Load() {
		o.mu.Unlock()
		return nil
	}
	o.closed.Store(true)
	o.mu.Unlock()
	for _, w := range words {
		futex.Wake(addr(w), 0)
	}
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

// Liveness

// self is this process: its pid and the low 32 bits of its start time.
var self = func() struct{ pid, start uint32 } {
	id := proc.Self()
	return struct{ pid, start uint32 }{id.Pid, uint32(id.Start)}
}()

// rec packs a holder record: pid in the high half, the low 32 bits of the
// process start time in the low half, so one atomic load reads both.
func rec(pid, start uint32) uint64 { return uint64(pid)<<32 | uint64(start) }

var selfRec = rec(self.pid, self.start)

// alive reports whether the process pid, started at start (low 32 bits of
// its start time, if haveStart), is still running. It errs on the side of
// life: a process it cannot disprove is alive, so a live holder is never
// robbed. A pid that exists with another start time was reused: the holder
// is dead. Liveness is never pid existence alone when the start is known.
func alive(pid, start uint32, haveStart bool) bool {
	if pid == 0 {
		return false
	}
	if pid == self.pid {
		return !haveStart || start == self.start
	}
	id, err := proc.Lookup(int(pid))
	if err != nil {
		// Gone, a zombie, or unreadable: proc.Alive tells them apart.
		return proc.Alive(proc.ID{Pid: pid})
	}
	return !haveStart || uint32(id.Start) == start
}

// isTimeout reports whether a futex wait error is only its time running out.
func isTimeout(err error) bool { return err == nil || errors.Is(err, futex.ErrTimeout) }

// noCopy makes go vet's copylocks check report copies of the types holding it.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
