package semaphore

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/shm"
)

// Locked values
//
// Python's Value and Array come with a lock (get_lock()). Here that pair
// is a Locked: a Mutex and an shm.Array in one segment, so that one handle
// carries both to a child and neither can travel without the other. It
// lives in this package, not in shm, because shm imports no other ipckit
// package; the array is an ordinary shm.Array placed after the Mutex, so
// every Array method works on it (each atomic per element), and the Mutex
// makes a sequence of them atomic as a whole.
//
// Layout: LockedSize(n, element size) bytes at an 8-byte aligned offset.
const (
	// offLockedMutex is the Mutex (MutexSize bytes).
	offLockedMutex = 0
	// offLockedKind (uint32) is the shm.Kind of the array (shm.ArrayKind):
	// it says which element type the array holds, and is the magic
	// number. Written by the creator, once, before the segment is
	// published; read by attach.
	offLockedKind = 16
	// offLockedLen (uint32) is the number of elements. Written by the
	// creator, once; read by attach. Bytes 24 to 31 are reserved, zero.
	offLockedLen = 20
	// lockedHeader is where the elements start.
	lockedHeader = 32
	// maxLockedLen bounds the element count a Locked can hold.
	maxLockedLen = 1<<32 - 1
)

// LockedSize returns the bytes a Locked of n elements of elemSize bytes
// takes.
func LockedSize(n, elemSize int) int { return lockedHeader + n*elemSize }

// Locked is an array of numbers in shared memory with the [Mutex] that
// guards it, in one segment: Python's Value (n = 1) and Array, with their
// get_lock(), which is [Locked.Mutex]. Each element operation of
// [Locked.Array] is atomic on its own; hold the Mutex (or use
// [Locked.Do]) to make several of them one step, as Python's
// `with v.get_lock(): v.value += 1` does.
//
// A *Locked is safe for concurrent use by goroutines and processes (Close
// aside: see the package doc, "Closing"), and may be passed to a child
// process (see the package doc, "Sharing"). A Locked must not be copied.
// The zero Locked is not usable: get one from [NewLocked], [CreateLocked],
// [OpenLocked], [InitLockedAt] or [LockedAt]. No method returns a slice.
type Locked[T shm.Elem] struct {
	object
	mutex *Mutex
	array *shm.Array[T]
}

// validLockedLen returns an error if a Locked cannot hold n elements.
func validLockedLen(n int) error {
	if n < 1 || n > maxLockedLen {
		return fmt.Errorf("semaphore: locked array of %d elements, want 1 to %d: %w", n, maxLockedLen, os.ErrInvalid)
	}
	return nil
}

func lockedSize[T shm.Elem](n int) (int, error) {
	if err := validLockedLen(n); err != nil {
		return 0, err
	}
	_, size := shm.ArrayKind[T]()
	if n > (shm.MaxSize-lockedHeader)/size {
		return 0, fmt.Errorf("semaphore: locked array of %d elements of %d bytes is larger than %d bytes: %w", n, size, shm.MaxSize, os.ErrInvalid)
	}
	return LockedSize(n, size), nil
}

// NewLocked returns a Locked of n zeros (n at least 1) in an anonymous
// segment of its own.
func NewLocked[T shm.Elem](n int) (*Locked[T], error) {
	size, err := lockedSize[T](n)
	if err != nil {
		return nil, err
	}
	return own(initLocked[T](n))(shm.KindLocked.CreateAnonymous(size))
}

// CreateLocked returns a Locked of n zeros in a new named segment; see
// [shm.Create] for the name and for opts (nil for the defaults).
func CreateLocked[T shm.Elem](name string, n int, opts *shm.Options) (*Locked[T], error) {
	size, err := lockedSize[T](n)
	if err != nil {
		return nil, err
	}
	return create(shm.KindLocked, name, size, opts, initLocked[T](n))
}

// OpenLocked opens the Locked in the named segment made by
// [CreateLocked]; T must be the type it was made with (else an error
// wrapping [shm.ErrKind]).
func OpenLocked[T shm.Elem](name string) (*Locked[T], error) {
	return own(lockedAt[T])(shm.KindLocked.Open(name))
}

func initLocked[T shm.Elem](n int) func(*shm.Segment, int) (*Locked[T], *object, error) {
	return func(seg *shm.Segment, off int) (*Locked[T], *object, error) {
		l, err := InitLockedAt[T](seg, off, n)
		if err != nil {
			return nil, nil, err
		}
		return l, &l.object, nil
	}
}

// InitLockedAt makes a Locked of n zeros at off (a multiple of 8) in
// seg.Bytes(), over whatever was there; [LockedSize] bytes must fit.
// Nobody may use the memory meanwhile. It does not own seg.
func InitLockedAt[T shm.Elem](seg *shm.Segment, off, n int) (*Locked[T], error) {
	size, err := lockedSize[T](n)
	if err != nil {
		return nil, err
	}
	l := new(Locked[T])
	if err := l.place(seg, off, size); err != nil {
		return nil, err
	}
	clear(l.mem)
	kind, _ := shm.ArrayKind[T]()
	u32(l.mem, offLockedLen).Store(uint32(n))
	u32(l.mem, offLockedKind).Store(uint32(kind)) // last: attach loads it first
	return l, l.words(n)
}

// LockedAt attaches to the Locked at off in seg.Bytes(), made by
// [InitLockedAt] with the same T. It does not own seg.
func LockedAt[T shm.Elem](seg *shm.Segment, off int) (*Locked[T], error) {
	l, _, err := lockedAt[T](seg, off)
	return l, err
}

func lockedAt[T shm.Elem](seg *shm.Segment, off int) (*Locked[T], *object, error) {
	l := new(Locked[T])
	if err := l.attach(seg, off); err != nil {
		return nil, nil, err
	}
	return l, &l.object, nil
}

func (l *Locked[T]) attach(seg *shm.Segment, off int) error {
	if err := l.place(seg, off, lockedHeader); err != nil {
		return err
	}
	want, size := shm.ArrayKind[T]()
	switch k := shm.Kind(u32(l.mem, offLockedKind).Load()); {
	case k == want:
	case arrayKinds[k]:
		return fmt.Errorf("semaphore: a locked %v opened as a locked %v: %w", k, want, shm.ErrKind)
	default:
		return fmt.Errorf("semaphore: locked array of element kind %d: %w", uint32(k), ErrCorrupt)
	}
	n := int(u32(l.mem, offLockedLen).Load())
	if err := validLockedLen(n); err != nil {
		return fmt.Errorf("semaphore: locked array of %d elements: %w", n, ErrCorrupt)
	}
	if err := l.extend(LockedSize(n, size), fmt.Sprintf("%d elements", n)); err != nil {
		return err
	}
	return l.words(n)
}

func (l *Locked[T]) words(n int) (err error) {
	if l.mutex, err = MutexAt(l.seg, l.off+offLockedMutex); err != nil {
		return err
	}
	l.array, err = shm.ArrayAt[T](l.seg, l.off+lockedHeader, n)
	return err
}

// Mutex returns the Mutex that guards the array: Python's get_lock().
func (l *Locked[T]) Mutex() *Mutex { return l.mutex }

// Array returns the array. It stays valid until l is closed.
func (l *Locked[T]) Array() *shm.Array[T] { return l.array }

// Do runs fn with the Mutex held; see [Mutex.Do].
func (l *Locked[T]) Do(ctx context.Context, fn func() error) error { return l.mutex.Do(ctx, fn) }

// DoRepair runs fn with the Mutex held, after repair if its holder died;
// see [Mutex.DoRepair].
func (l *Locked[T]) DoRepair(ctx context.Context, repair, fn func() error) error {
	return l.mutex.DoRepair(ctx, repair, fn)
}

// Segment returns the segment l lives in.
func (l *Locked[T]) Segment() *shm.Segment { return l.seg }

// Offset returns l's offset in [shm.Segment.Bytes].
func (l *Locked[T]) Offset() int { return l.off }

// Close releases the Locked's own segment, if it made or opened one, and
// returns [os.ErrClosed] to this process's calls waiting for the Mutex. It
// does not unlock the Mutex. It is safe to call twice; the Array must not
// be used after it.
func (l *Locked[T]) Close() error { return errors.Join(l.mutex.Close(), l.close()) }

// GobEncode encodes a handle to l; see the package doc.
func (l *Locked[T]) GobEncode() ([]byte, error) { return l.encode() }

// GobDecode attaches l, which must be new, to the Locked a handle names.
func (l *Locked[T]) GobDecode(b []byte) error {
	return decode(b, func(seg *shm.Segment, off int) (*object, error) {
		return &l.object, l.attach(seg, off)
	})
}

// arrayKinds holds the kind of every shm.Array type.
var arrayKinds = map[shm.Kind]bool{
	arrayKind[int8](): true, arrayKind[uint8](): true, arrayKind[int16](): true, arrayKind[uint16](): true,
	arrayKind[int32](): true, arrayKind[uint32](): true, arrayKind[int64](): true, arrayKind[uint64](): true,
	arrayKind[float32](): true, arrayKind[float64](): true,
}

func arrayKind[T shm.Elem]() shm.Kind {
	k, _ := shm.ArrayKind[T]()
	return k
}

func lockedHandoff[T shm.Elem]() handoff.Resolver {
	return handoff.For(func(l *Locked[T]) []*os.File { return handoff.Files(l.Segment()) })
}

func init() {
	handoff.Register(
		lockedHandoff[int8](), lockedHandoff[uint8](), lockedHandoff[int16](), lockedHandoff[uint16](),
		lockedHandoff[int32](), lockedHandoff[uint32](), lockedHandoff[int64](), lockedHandoff[uint64](),
		lockedHandoff[float32](), lockedHandoff[float64](),
	)
}
