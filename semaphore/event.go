package semaphore

import (
	"context"
	"os"
	"sync/atomic"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/shm"
)

// Event
//
// One 32-bit word: bit 0 is the flag, the other bits count the Sets that
// found it clear. Wait returns when the flag is set or the count moved since
// it started waiting, so a Set followed at once by a Clear still releases
// every waiter that was there before the Set, as in Python. Set wakes every
// sleeper when it changes the flag. Nothing is owned, so nothing is lost
// when a process dies.
//
// Layout (EventSize bytes):
//
//	off size field  written by          read by
//	  0    4 word   Set, Clear (CAS)    IsSet, Wait; the futex word

// EventSize is the number of bytes an [Event] takes in a segment.
const EventSize = 8

// Event is a flag in shared memory that processes can wait for, like
// Python's multiprocessing.Event. The zero memory holds a clear Event.
//
// An *Event is safe for concurrent use and may be passed to a child process.
// It must not be copied.
type Event struct {
	object
	word *atomic.Uint32
}

// NewEvent returns a clear Event in an anonymous segment of its own.
func NewEvent() (*Event, error) {
	return own(eventAt)(shm.KindEvent.CreateAnonymous(EventSize))
}

// CreateEvent returns a clear Event in a new named segment; see
// [shm.Create]. Only opts.Mode is used.
func CreateEvent(name string, opts *shm.Options) (*Event, error) {
	return own(eventAt)(shm.KindEvent.Create(name, EventSize, opts))
}

// OpenEvent opens the Event in the named segment made by [CreateEvent].
func OpenEvent(name string) (*Event, error) {
	return own(eventAt)(shm.KindEvent.Open(name))
}

// EventAt places an Event at off (a multiple of 8) in seg.Bytes(), which
// must hold EventSize bytes there: zeroed (a clear Event) or an Event. It
// does not own seg.
func EventAt(seg *shm.Segment, off int) (*Event, error) {
	e, _, err := eventAt(seg, off)
	return e, err
}

func eventAt(seg *shm.Segment, off int) (*Event, *object, error) {
	e := new(Event)
	if err := e.place(seg, off, EventSize); err != nil {
		return nil, nil, err
	}
	e.word = u32(e.mem, 0)
	return e, &e.object, nil
}

// Set sets the flag and wakes every waiter. After Close it does nothing.
func (e *Event) Set() {
	if e.closed.Load() {
		return
	}
	for {
		w := e.word.Load()
		if w&1 != 0 {
			return
		}
		if e.word.CompareAndSwap(w, (w+2)|1) {
			futex.Wake(addr(e.word), 0)
			return
		}
	}
}

// Clear clears the flag. After Close it does nothing.
func (e *Event) Clear() {
	if !e.closed.Load() {
		e.word.And(^uint32(1))
	}
}

// IsSet reports whether the flag is set (false after Close).
func (e *Event) IsSet() bool { return !e.closed.Load() && e.word.Load()&1 != 0 }

// Wait waits until the flag is set, or ctx is done (then it returns
// ctx.Err()).
func (e *Event) Wait(ctx context.Context) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	w := e.word.Load()
	if w&1 != 0 {
		return nil
	}
	for {
		err := futex.WaitContext(ctx, addr(e.word), w, sleepSlice)
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if !isTimeout(err) {
			return err
		}
		now := e.word.Load()
		if now&1 != 0 || now>>1 != w>>1 {
			return nil
		}
		if e.closed.Load() {
			return os.ErrClosed
		}
		w = now
	}
}

// Close releases the Event's own segment, if it made or opened one, and
// returns [os.ErrClosed] to this process's calls waiting in Wait. It is safe
// to call twice.
func (e *Event) Close() error { return e.close(e.word) }

// GobEncode encodes a handle to e; see the package doc.
func (e *Event) GobEncode() ([]byte, error) { return e.encode() }

// GobDecode attaches e, which must be new, to the Event a handle names.
func (e *Event) GobDecode(b []byte) error {
	return decode(b, func(seg *shm.Segment, off int) (*object, error) {
		if err := e.place(seg, off, EventSize); err != nil {
			return nil, err
		}
		e.word = u32(e.mem, 0)
		return &e.object, nil
	})
}
