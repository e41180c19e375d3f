package semaphore

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/shm"
)

// Robust futex mutex
//
// The lock word holds the owner's pid, so there is no moment when the lock
// is held with no owner recorded: Lock is one CAS 0 -> pid, Unlock one CAS
// pid -> 0. Bit 31 says that someone may sleep on the word; a waiter sets it
// before sleeping, and an Unlock that finds it swaps the word to 0 and wakes
// one sleeper, which retries with the bit set (it cannot know whether others
// still sleep), as in Drepper's "Futexes are tricky", mutex 3.
//
// The pid alone cannot prove its owner alive (pids are reused), so beside
// the word the holder keeps a record, pid and process start time in one
// 64-bit word, written after the CAS (and skipped when it already matches,
// as it does when one process locks repeatedly). A waiter sleeps on the word
// with a timeout and, at most every checkEvery, checks the owner: if the
// record names the word's pid, the owner is dead when that pid is gone or
// now belongs to a process with another start time; if the record names
// someone else (the owner died between its CAS and its record store, or is
// in that window now), only a pid that no longer exists counts as dead. A
// waiter that finds the owner dead takes the lock with a CAS from the word it
// checked, so of several waiters exactly one wins, and marks the lock
// inconsistent; see the package doc for what the new holder does.
//
// Goroutines of one process share its pid: the lock excludes them from each
// other like a sync.Mutex, and, like a sync.Mutex, any of them may unlock it.
//
// Layout (MutexSize bytes, all fields atomic):
//
//	off size field  written by                 read by
//	  0    4 word   lockers (CAS), unlocker    everyone; the futex word
//	  4    4 state  the holder                 the holder, after acquiring
//	  8    8 owner  the holder, after its CAS  waiters checking liveness
const (
	waitersBit = 1 << 31
	pidMask    = 1<<30 - 1

	stateConsistent     = 0
	stateInconsistent   = 1
	stateNotRecoverable = 2
)

// MutexSize is the number of bytes a [Mutex] takes in a segment.
const MutexSize = 16

// Mutex is a lock in shared memory that works across processes and between
// goroutines of one process, like Python's multiprocessing.Lock, and that
// survives its holder's death (see the package doc, "Owner death").
//
// A *Mutex is safe for concurrent use and may be passed to a child process.
// It must not be copied. Zeroed memory holds an unlocked Mutex.
type Mutex struct {
	object
	mu mutexWords
}

// mutexWords are the shared words of a mutex, usable inside other objects.
type mutexWords struct {
	word, state *atomic.Uint32
	owner       *atomic.Uint64
	closed      *atomic.Bool
}

func wordsAt(mem []byte, closed *atomic.Bool) mutexWords {
	return mutexWords{word: u32(mem, 0), state: u32(mem, 4), owner: u64(mem, 8), closed: closed}
}

// NewMutex returns an unlocked Mutex in an anonymous segment of its own: it
// reaches other processes only as an argument of a child started by spawn.
func NewMutex() (*Mutex, error) {
	return own(mutexAt)(shm.CreateAnonymous(MutexSize, segOpts(nil, shm.KindMutex)))
}

// CreateMutex returns an unlocked Mutex in a new named segment; see
// [shm.Create]. Only opts.Mode is used.
func CreateMutex(name string, opts *shm.Options) (*Mutex, error) {
	return own(mutexAt)(shm.Create(name, MutexSize, segOpts(opts, shm.KindMutex)))
}

// OpenMutex opens the Mutex in the named segment made by [CreateMutex].
func OpenMutex(name string, opts *shm.Options) (*Mutex, error) {
	return own(mutexAt)(shm.Open(name, segOpts(opts, shm.KindMutex)))
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
	if err := m.place(seg, off, MutexSize); err != nil {
		return nil, nil, err
	}
	if self.pid == 0 || self.pid > pidMask {
		return nil, nil, fmt.Errorf("semaphore: pid %d does not fit a lock word", self.pid)
	}
	m.mu = wordsAt(m.mem, &m.closed)
	return m, &m.object, nil
}

// Lock locks m, waiting as long as it takes. It returns nil, or
// [ErrOwnerDead] with the lock held, or [ErrNotRecoverable] (not held), or
// [os.ErrClosed].
func (m *Mutex) Lock() error {
	if m.mu.word.CompareAndSwap(0, self.pid) {
		return m.mu.acquired()
	}
	return m.lockSlow(context.Background())
}

// LockContext is [Mutex.Lock] that gives up when ctx is done, returning
// ctx.Err() without the lock.
func (m *Mutex) LockContext(ctx context.Context) error {
	if m.mu.word.CompareAndSwap(0, self.pid) {
		return m.mu.acquired()
	}
	return m.lockSlow(ctx)
}

func (m *Mutex) lockSlow(ctx context.Context) error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
	return m.mu.lock(ctx)
}

// TryLock locks m if it is free, or if its holder is dead (then with
// [ErrOwnerDead]), and reports whether it did. A lock held by a live
// process is false, nil.
func (m *Mutex) TryLock() (bool, error) {
	if m.closed.Load() {
		return false, os.ErrClosed
	}
	return m.mu.tryLock()
}

// Unlock unlocks m. Unlocking a Mutex that is not locked returns
// [ErrNotLocked], one locked by another process [ErrNotOwner]; neither
// changes it. Unlocking an inconsistent Mutex (after [ErrOwnerDead], without
// [Mutex.MarkConsistent]) makes it unrecoverable.
func (m *Mutex) Unlock() error {
	if m.mu.state.Load() == stateConsistent && m.mu.word.CompareAndSwap(self.pid, 0) {
		return nil
	}
	return m.mu.unlockSlow()
}

// MarkConsistent tells m that the data it guards was repaired after
// [ErrOwnerDead]; the caller must hold m. It does nothing to a consistent
// Mutex.
func (m *Mutex) MarkConsistent() error { return m.mu.markConsistent() }

// Close releases the Mutex's own segment, if it made or opened one, and
// returns [os.ErrClosed] to this process's calls waiting for it. It does not
// unlock m. It is safe to call twice.
func (m *Mutex) Close() error { return m.close(m.mu.word) }

// GobEncode encodes a handle to m; see the package doc.
func (m *Mutex) GobEncode() ([]byte, error) { return m.encode() }

// GobDecode attaches m, which must be new, to the Mutex a handle names.
func (m *Mutex) GobDecode(b []byte) error {
	return decode(b, func(seg *shm.Segment, off int) (*object, error) {
		if err := m.place(seg, off, MutexSize); err != nil {
			return nil, err
		}
		m.mu = wordsAt(m.mem, &m.closed)
		return &m.object, nil
	})
}

// acquired finishes a lock the caller just took: record the owner, then
// act on the consistency state.
func (w mutexWords) acquired() error {
	if w.owner.Load() != selfRec {
		w.owner.Store(selfRec)
	}
	switch w.state.Load() {
	case stateConsistent:
		return nil
	case stateInconsistent:
		return ErrOwnerDead
	default:
		w.release()
		return ErrNotRecoverable
	}
}

// spins is how many times a locker polls the word before it sleeps: a
// handoff between processes on two CPUs costs less than a futex wake.
const spins = 64

func (w mutexWords) lock(ctx context.Context) error {
	for i := range spins {
		v := w.word.Load()
		if v == 0 && w.word.CompareAndSwap(0, self.pid) {
			return w.acquired()
		}
		if i%8 == 7 {
			runtime.Gosched()
		}
	}
	last := time.Now()
	for {
		if w.closed.Load() {
			return os.ErrClosed
		}
		v := w.word.Load()
		if v == 0 {
			if w.word.CompareAndSwap(0, self.pid|waitersBit) {
				return w.acquired()
			}
			continue
		}
		if v&waitersBit == 0 {
			if !w.word.CompareAndSwap(v, v|waitersBit) {
				continue
			}
			v |= waitersBit
		}
		err := futex.WaitContext(ctx, addr(w.word), v, sleepSlice)
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if !isTimeout(err) {
			return err
		}
		if time.Since(last) >= checkEvery {
			last = time.Now()
			if ok, err := w.recover(); ok {
				return err
			}
		}
	}
}

func (w mutexWords) tryLock() (bool, error) {
	for {
		v := w.word.Load()
		if v == 0 {
			if w.word.CompareAndSwap(0, self.pid) {
				err := w.acquired()
				return err != ErrNotRecoverable, err
			}
			continue
		}
		if ok, err := w.recover(); ok {
			return err != ErrNotRecoverable, err
		}
		if v == w.word.Load() {
			return false, nil
		}
	}
}

// recover takes the lock if its owner is dead, and reports whether it did.
func (w mutexWords) recover() (bool, error) {
	v := w.word.Load()
	pid := v & pidMask
	if pid == 0 {
		return false, nil
	}
	r := w.owner.Load()
	if alive(pid, uint32(r), uint32(r>>32) == pid) {
		return false, nil
	}
	// Keep the waiters bit: others may sleep on the word.
	if !w.word.CompareAndSwap(v, self.pid|waitersBit) {
		return false, nil
	}
	w.owner.Store(selfRec)
	if w.state.Load() == stateNotRecoverable {
		w.release()
		return true, ErrNotRecoverable
	}
	w.state.Store(stateInconsistent)
	return true, ErrOwnerDead
}

// release unlocks and wakes a sleeper if there may be one.
func (w mutexWords) release() {
	if w.word.Swap(0)&waitersBit != 0 {
		futex.Wake(addr(w.word), 1)
	}
}

func (w mutexWords) unlockSlow() error {
	v := w.word.Load()
	switch {
	case v&pidMask == 0:
		return ErrNotLocked
	case v&pidMask != self.pid:
		return ErrNotOwner
	}
	if w.state.Load() == stateInconsistent {
		w.state.Store(stateNotRecoverable)
	}
	w.release()
	return nil
}

func (w mutexWords) markConsistent() error {
	v := w.word.Load()
	switch {
	case v&pidMask == 0:
		return ErrNotLocked
	case v&pidMask != self.pid:
		return ErrNotOwner
	}
	if w.state.Load() == stateInconsistent {
		w.state.Store(stateConsistent)
	}
	return nil
}

// Internal locks (the guard of a Semaphore or Barrier) recover from a dead
// holder themselves: lockRepair calls repair with the lock held after
// ErrOwnerDead, then marks the lock consistent.
func (w mutexWords) lockRepair(ctx context.Context, repair func()) error {
	var err error
	if w.word.CompareAndSwap(0, self.pid) {
		err = w.acquired()
	} else {
		err = w.lock(ctx)
	}
	if err == ErrOwnerDead {
		repair()
		w.state.Store(stateConsistent)
		return nil
	}
	return err
}

func (w mutexWords) unlock() {
	if !w.word.CompareAndSwap(self.pid, 0) {
		w.release()
	}
}
