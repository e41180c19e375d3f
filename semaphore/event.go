package semaphore

import (
	"context"
	"sync/atomic"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// Event
//
// One 32-bit word: bit 0 is the flag, the other bits count the Sets that
// found it clear. Wait returns when the flag is set or the count moved since
// it started waiting, so a Set followed at once by a Clear still releases
// every waiter that was there before the Set, as in Python. Set wakes every
// sleeper when it changes the flag. Nothing is owned, so nothing is lost
// when a process dies. A waiter sleeps on the word with robust.WaitValue,
// with no timeout but its deadline: a blocked waiter costs nothing.
//
// Layout: EventSize bytes at an 8-byte aligned offset; TestLayout pins the
// offset.
const (
	// offEventWord (uint32) is the futex word: bit 0 the flag, bits 1 to 31
	// the count of Sets that found the flag clear. Written by Set (CAS) and
	// Clear (And); read by IsSet and Wait. Atomic. Bytes 4 to 7 are
	// padding, always 0.
	offEventWord = 0
	// eventFlag is the flag's bit of the word; eventSets is the increment of
	// its count.
	eventFlag = 1
	eventSets = 2
)

// EventSize is the number of bytes an [Event] takes in a segment.
const EventSize = 8

// Event is a flag in shared memory that processes can wait for, like
// Python's multiprocessing.Event.
//
// An *Event is safe for concurrent use by goroutines and processes (Close
// aside: see the package doc, "Closing"), and may be passed to a child
// process (see the package doc, "Sharing"). An Event must not be copied. The
// zero Event is not usable: get one from [NewEvent], [CreateEvent],
// [OpenEvent] or [EventAt]. Zeroed shared memory, on the other hand, holds a
// clear Event. No method returns a slice.
type Event struct {
	object
	word *atomic.Uint32
}

// NewEvent returns a clear Event in an anonymous segment of its own.
func NewEvent() (*Event, error) {
	return own(eventAt)(shm.KindEvent.CreateAnonymous(EventSize))
}

// CreateEvent returns a clear Event in a new named segment; see
// [shm.Create] for the name and for opts (nil for the defaults).
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
	if err := e.attach(seg, off); err != nil {
		return nil, nil, err
	}
	return e, &e.object, nil
}

func (e *Event) attach(seg *shm.Segment, off int) error {
	if err := e.place(seg, off, EventSize); err != nil {
		return err
	}
	e.word = u32(e.mem, offEventWord)
	return nil
}

// Set sets the flag and wakes every waiter. After Close it does nothing.
func (e *Event) Set() {
	if e.closed() {
		return
	}
	for {
		w := e.word.Load()
		if w&eventFlag != 0 {
			return
		}
		if e.word.CompareAndSwap(w, (w+eventSets)|eventFlag) {
			futex.Wake(addr(e.word), 0)
			return
		}
	}
}

// Clear clears the flag. After Close it does nothing.
func (e *Event) Clear() {
	if !e.closed() {
		e.word.And(^uint32(eventFlag))
	}
}

// IsSet reports whether the flag is set (false after Close).
func (e *Event) IsSet() bool { return !e.closed() && e.word.Load()&eventFlag != 0 }

// Wait waits until the flag is set, or ctx is done (then it returns
// ctx.Err()).
func (e *Event) Wait(ctx context.Context) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	opts := &robust.WaitOptions{Closer: &e.closer}
	w := e.word.Load()
	for {
		if w&eventFlag != 0 {
			return nil
		}
		if err := robust.WaitValue(ctx, e.word, w, opts); err != nil {
			return err
		}
		now := e.word.Load()
		if now&eventFlag != 0 || now>>1 != w>>1 {
			return nil
		}
		w = now
	}
}

// Segment returns the segment e lives in.
func (e *Event) Segment() *shm.Segment { return e.seg }

// Offset returns e's offset in [shm.Segment.Bytes].
func (e *Event) Offset() int { return e.off }

// Close releases the Event's own segment, if it made or opened one, and
// returns [os.ErrClosed] to this process's calls waiting in Wait. It is safe
// to call twice.
func (e *Event) Close() error { return e.close(e.word) }

// GobEncode encodes a handle to e; see the package doc.
func (e *Event) GobEncode() ([]byte, error) { return e.encode() }

// GobDecode attaches e, which must be new, to the Event a handle names.
func (e *Event) GobDecode(b []byte) error {
	return decode(b, func(seg *shm.Segment, off int) (*object, error) {
		return &e.object, e.attach(seg, off)
	})
}
