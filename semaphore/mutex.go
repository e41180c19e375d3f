package semaphore

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// Robust futex mutex
//
// A Mutex is internal/robust's lock (see "Robust lock" there) placed in a
// segment: a 64-bit lock word that holds the liveness token of the
// holding process (internal/liveness: a lock on one byte of a per-uid
// registry file that the kernel drops at the holder's death, and that
// every process, in any PID namespace, can test), and a sleepers word.
// Uncontended, Lock is one compare-and-swap (0 -> token) and Unlock one
// compare-and-swap back and a load of the sleepers word, as in glibc's
// robust mutex. A waiter spins adaptively, then sleeps on the futex
// following the holder: the kernel tells it the moment the holder dies,
// and it looks at the holder once more before it gives up on any
// deadline, so a dead holder is reported (ErrOwnerDead, with the lock
// held), never a timeout. A holder whose liveness cannot be proven is
// waited for, never robbed. Consistency (ErrOwnerDead, MarkConsistent,
// ErrNotRecoverable) is the lock word's too: a takeover marks it
// inconsistent, and unlocking it so makes it not recoverable.
//
// A Mutex has no header of its own: zeroed memory holds an unlocked
// Mutex, and its layout is internal/robust's (robust.Size bytes):
//
//	off size field     written by                    read by
//	  0    8 word      lockers (CAS 0 -> token),     everyone
//	                   the holder, a taker-over
//	  8    4 sleepers  sleepers and wakers (CAS);    wakers; the futex word
//	                   announcement in bit 0
//	 12    4 reserved  nobody: zero                  nobody
//
// Every access is a sync/atomic operation (see robust's "Memory
// ordering" for what pairs with what, on arm64 as on amd64).
//
// Goroutines of one process share its token: the lock excludes them from
// each other like a sync.Mutex, and, like a sync.Mutex, any of them may
// unlock it.

// MutexSize is the number of bytes a [Mutex] takes in a segment.
const MutexSize = robust.Size

// Mutex is a lock in shared memory that works across processes and between
// goroutines of one process, like Python's multiprocessing.Lock, and that
// survives its holder's death (see the package doc, "Owner death").
//
// A *Mutex is safe for concurrent use by goroutines and processes (Close
// aside: see the package doc, "Closing"), and may be passed to a child
// process (see the package doc, "Sharing"). A Mutex must not be copied. The
// zero Mutex is not usable: get one from [NewMutex], [CreateMutex],
// [OpenMutex] or [MutexAt]. Zeroed shared memory, on the other hand, holds
// an unlocked Mutex. No method returns a slice.
type Mutex struct {
	object
	lock *robust.Lock
}

// NewMutex returns an unlocked Mutex in an anonymous segment of its own: it
// reaches other processes only as an argument of a child started by spawn.
func NewMutex() (*Mutex, error) {
	return own(mutexAt)(shm.KindMutex.CreateAnonymous(MutexSize))
}

// CreateMutex returns an unlocked Mutex in a new named segment; see
// [shm.Create] for the name and for opts (nil for the defaults).
func CreateMutex(name string, opts *shm.Options) (*Mutex, error) {
	return own(mutexAt)(shm.KindMutex.Create(name, MutexSize, opts))
}

// OpenMutex opens the Mutex in the named segment made by [CreateMutex].
func OpenMutex(name string) (*Mutex, error) {
	return own(mutexAt)(shm.KindMutex.Open(name))
}

// MutexAt places a Mutex at off (a multiple of 8) in seg.Bytes(), which
// must hold MutexSize bytes there: zeroed, or a Mutex. The Mutex does not
// own seg; Close leaves it open.
func MutexAt(seg *shm.Segment, off int) (*Mutex, error) {
	m, _, err := mutexAt(seg, off)
	return m, err
}

func mutexAt(seg *shm.Segment, off int) (*Mutex, *object, error) {
	m := new(Mutex)
	if err := m.attach(seg, off); err != nil {
		return nil, nil, err
	}
	return m, &m.object, nil
}

func (m *Mutex) attach(seg *shm.Segment, off int) error {
	return m.attachSpin(seg, off, 0)
}

// attachSpin is attach with a spin option (robust.Options.Spin: 0 for the
// default, negative never to spin); benchmarks compare the two.
func (m *Mutex) attachSpin(seg *shm.Segment, off int, spin time.Duration) error {
	if err := m.place(seg, off, MutexSize); err != nil {
		return err
	}
	l, err := robust.At(m.mem, &robust.Options{Closer: &m.closer, Spin: spin})
	if err != nil {
		return fmt.Errorf("semaphore: %w", err)
	}
	m.lock = l
	return nil
}

// Lock locks m, waiting as long as it takes. It returns nil, or
// [ErrOwnerDead] with the lock held, or, without it, [ErrNotRecoverable],
// an error wrapping [ErrCorrupt] (the lock word is impossible), or
// [os.ErrClosed].
func (m *Mutex) Lock() error {
	if !m.shut.Load() && m.lock.TryLockFree() {
		return nil
	}
	return m.lockSlow(context.Background())
}

// LockContext is [Mutex.Lock] that gives up when ctx is done, returning
// ctx.Err() without the lock; but before it gives up it looks at the
// holder once more, so a holder that died is reported with [ErrOwnerDead]
// (the lock then held), however short the deadline.
func (m *Mutex) LockContext(ctx context.Context) error {
	if !m.shut.Load() && m.lock.TryLockFree() {
		return nil
	}
	return m.lockSlow(ctx)
}

func (m *Mutex) lockSlow(ctx context.Context) error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
	return m.lock.Lock(ctx)
}

// TryLock locks m if it is free, or if its holder is dead (then with
// [ErrOwnerDead]), and reports whether it did. A lock held by a live
// process, this one included, or by one whose liveness cannot be proven
// (see the package doc, "Owner death"), is false, nil.
func (m *Mutex) TryLock() (bool, error) {
	if m.closed() {
		return false, os.ErrClosed
	}
	return m.lock.TryLock()
}

// Unlock unlocks m. Unlocking a Mutex that is not locked returns
// [ErrNotLocked], one locked by another process [ErrNotOwner]; neither
// changes it. Unlocking an inconsistent Mutex (after [ErrOwnerDead], without
// [Mutex.MarkConsistent]) makes it unrecoverable.
func (m *Mutex) Unlock() error {
	if m.shut.Load() {
		return os.ErrClosed
	}
	return m.lock.Unlock()
}

// MarkConsistent tells m that the data it guards was repaired after
// [ErrOwnerDead]; the caller must hold m. It does nothing to a consistent
// Mutex.
func (m *Mutex) MarkConsistent() error {
	if m.closed() {
		return os.ErrClosed
	}
	return m.lock.MarkConsistent()
}

// Segment returns the segment m lives in.
func (m *Mutex) Segment() *shm.Segment { return m.seg }

// Offset returns m's offset in [shm.Segment.Bytes].
func (m *Mutex) Offset() int { return m.off }

// Close releases the Mutex's own segment, if it made or opened one, and
// returns [os.ErrClosed] to this process's calls waiting for it, and to
// every later call. It does not unlock m. It is safe to call twice.
func (m *Mutex) Close() error { return m.close(m.lock.Sleepers()) }

// GobEncode encodes a handle to m; see the package doc.
func (m *Mutex) GobEncode() ([]byte, error) { return m.encode() }

// GobDecode attaches m, which must be new, to the Mutex a handle names.
func (m *Mutex) GobDecode(b []byte) error {
	return decode(b, func(seg *shm.Segment, off int) (*object, error) {
		return &m.object, m.attach(seg, off)
	})
}
