package semaphore

import (
	"context"
	"errors"
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
// still sleep), as in Drepper's "Futexes are tricky", mutex 3. A word whose
// pid bits are 0 is free whatever its other bits say (bit 30 is never set
// by this code; a corrupt word is taken over, not waited on).
//
// The pid alone cannot prove its owner alive (pids are reused), so beside
// the word the holder keeps a record, pid and process start time in one
// 64-bit word: written just after the CAS that takes the lock, and cleared
// to 0 just before the CAS that frees it. A waiter sleeps on the word with a
// timeout and, at most every checkEvery, checks the owner:
//
//   - the record names the word's pid: the owner is dead when that pid is
//     gone or now belongs to a process with another start time;
//   - the record is 0 or names another pid (the owner is between its CAS
//     and its record store, or died there): only a pid that no longer
//     exists counts as dead, so a live owner in that window is never robbed.
//
// Because Unlock clears the record, a record naming the word's pid was
// written by the holder itself, never left over by an earlier process that
// had the same pid. A waiter that finds the owner dead claims the record
// with a CAS (record -> 0), then takes the word with a CAS from the value it
// checked, so of several waiters exactly one wins, and marks the lock
// inconsistent; see the package doc for what the new holder does.
//
// Goroutines of one process share its pid: the lock excludes them from each
// other like a sync.Mutex, and, like a sync.Mutex, any of them may unlock it.
//
// Spinning. Before it sleeps, a locker polls the word for a while: a futex
// wake-up between two CPUs of a VM costs more than a short critical section
// in another process (figures: BENCHMARKS.md, section "semaphore: figures
// moved from code comments"). How long is adapted per lock and per process
// (see spinner): the budget grows when spinning won the lock late in the
// budget and shrinks when it ran out, between spinMin and spinMax.
// BenchmarkMutexSpin measures it against no spinning.
//
// Layout (MutexSize bytes, all fields atomic; pinned by TestLayout):
//
//	off size field  written by                       read by
//	  0    4 word   lockers (CAS), unlocker          everyone; the futex word
//	  4    4 state  the holder                       the holder, after acquiring
//	  8    8 owner  the holder (after its CAS, and   waiters checking liveness
//	                0 before its unlock), recoverers
const (
	waitersBit = 1 << 31
	pidMask    = 1<<30 - 1

	stateConsistent     = 0
	stateInconsistent   = 1
	stateNotRecoverable = 2
)

// Offsets of the mutex words from the start of a Mutex or of a guard (the
// internal lock of a Semaphore or Barrier); TestLayout pins them. Every
// access is atomic.
const (
	// offWord is the futex word: the holder's pid, and waitersBit. Written
	// by lockers (CAS 0 -> pid), the unlocker (CAS or Swap to 0) and
	// recoverers (CAS); read by everyone.
	offWord = 0
	// offState is the consistency state (stateConsistent...). Written by the
	// holder (and by a recoverer, which is then the holder); read by a new
	// holder just after it acquires.
	offState = 4
	// offOwner is the holder record, rec(pid, start). Written by the holder
	// after its CAS and zeroed before its unlock; claimed (CAS to 0) by a
	// recoverer; read by waiters checking the holder's liveness.
	offOwner = 8
)

// MutexSize is the number of bytes a [Mutex] takes in a segment.
const MutexSize = 16

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
	spin spinner
	mu   mutexWords
}

// mutexWords are the shared words of a mutex, usable inside other objects.
type mutexWords struct {
	word, state *atomic.Uint32
	owner       *atomic.Uint64
	closed      *atomic.Bool
	spin        *spinner
	internal    bool // a guard: any state but consistent means repair
}

func wordsAt(mem []byte, closed *atomic.Bool, spin *spinner) mutexWords {
	return mutexWords{word: u32(mem, offWord), state: u32(mem, offState), owner: u64(mem, offOwner), closed: closed, spin: spin}
}

// guardAt returns the words of an internal lock (see lockRepair).
func guardAt(mem []byte, closed *atomic.Bool, spin *spinner) mutexWords {
	w := wordsAt(mem, closed, spin)
	w.internal = true
	return w
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
	if err := m.place(seg, off, MutexSize); err != nil {
		return err
	}
	if self.pid == 0 || self.pid > pidMask {
		return fmt.Errorf("semaphore: pid %d, a lock word holds 1 to %d: %w", self.pid, pidMask, errors.ErrUnsupported)
	}
	m.mu = wordsAt(m.mem, &m.closed, &m.spin)
	return nil
}

// Lock locks m, waiting as long as it takes. It returns nil, or
// [ErrOwnerDead] with the lock held, or [ErrNotRecoverable] (not held), or
// [os.ErrClosed].
func (m *Mutex) Lock() error { return m.LockContext(context.Background()) }

// LockContext is [Mutex.Lock] that gives up when ctx is done, returning
// ctx.Err() without the lock.
func (m *Mutex) LockContext(ctx context.Context) error {
	if m.closed.Load() {
		return os.ErrClosed
	}
	if m.mu.word.CompareAndSwap(0, self.pid) {
		return m.mu.acquired()
	}
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
	if m.closed.Load() {
		return os.ErrClosed
	}
	return m.mu.unlockChecked()
}

// MarkConsistent tells m that the data it guards was repaired after
// [ErrOwnerDead]; the caller must hold m. It does nothing to a consistent
// Mutex.
func (m *Mutex) MarkConsistent() error {
	if m.closed.Load() {
		return os.ErrClosed
	}
	return m.mu.markConsistent()
}

// Segment returns the segment m lives in.
func (m *Mutex) Segment() *shm.Segment { return m.seg }

// Offset returns m's offset in [shm.Segment.Bytes].
func (m *Mutex) Offset() int { return m.off }

// Close releases the Mutex's own segment, if it made or opened one, and
// returns [os.ErrClosed] to this process's calls waiting for it, and to
// every later call. It does not unlock m. It is safe to call twice.
func (m *Mutex) Close() error { return m.close(m.mu.word) }

// GobEncode encodes a handle to m; see the package doc.
func (m *Mutex) GobEncode() ([]byte, error) { return m.encode() }

// GobDecode attaches m, which must be new, to the Mutex a handle names.
func (m *Mutex) GobDecode(b []byte) error {
	return decode(b, func(seg *shm.Segment, off int) (*object, error) {
		return &m.object, m.attach(seg, off)
	})
}

// faultAfterCAS, when set (by a test helper process), runs between the CAS
// that takes a lock and the store of the owner record: the window a holder
// can die in without a record. It is a package global, not a field of the
// lock, until the shared robust core replaces mutexWords (which runs it).
var faultAfterCAS func()

// acquired finishes a lock the caller just took: record the owner, then
// act on the consistency state.
func (w *mutexWords) acquired() error {
	if faultAfterCAS != nil {
		faultAfterCAS()
	}
	w.owner.Store(selfRec)
	st := w.state.Load()
	switch {
	case st == stateConsistent:
		return nil
	case w.internal:
		return ErrOwnerDead // lockRepair repairs
	case st == stateInconsistent:
		return ErrOwnerDead
	case st == stateNotRecoverable:
		w.release()
		return ErrNotRecoverable
	default:
		// Not a state this code writes: the memory was overwritten. Treat
		// it like a dead owner's, so the new holder repairs what it guards.
		w.state.Store(stateInconsistent)
		return ErrOwnerDead
	}
}

func (w *mutexWords) lock(ctx context.Context) error {
	if w.spin.spin(w.word) {
		return w.acquired()
	}
	last := time.Now()
	for {
		if w.closed.Load() {
			return os.ErrClosed
		}
		v := w.word.Load()
		if v&pidMask == 0 {
			if w.word.CompareAndSwap(v, self.pid|waitersBit) {
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
			// A wake meant for us may have been spent on this cancelled
			// wait; pass it on if the lock looks free.
			if w.word.Load()&pidMask == 0 {
				futex.Wake(addr(w.word), 1)
			}
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

func (w *mutexWords) tryLock() (bool, error) {
	for {
		v := w.word.Load()
		if v&pidMask == 0 {
			if w.word.CompareAndSwap(v, self.pid|v&waitersBit) {
				err := w.acquired()
				return !errors.Is(err, ErrNotRecoverable), err
			}
			continue
		}
		if ok, err := w.recover(); ok {
			return !errors.Is(err, ErrNotRecoverable), err
		}
		if v == w.word.Load() {
			return false, nil
		}
	}
}

// recover takes the lock if its owner is dead, and reports whether it did.
func (w *mutexWords) recover() (bool, error) {
	v := w.word.Load()
	pid := v & pidMask
	if pid == 0 {
		return false, nil
	}
	r := w.owner.Load()
	if alive(pid, uint32(r), uint32(r>>32) == pid) {
		return false, nil
	}
	// Claim the record first: from here until our own record is stored it
	// is 0, so nobody can mistake a stale record for ours (see above).
	if !w.owner.CompareAndSwap(r, 0) {
		return false, nil
	}
	for !w.word.CompareAndSwap(v, self.pid|waitersBit) { // keep the bit: others may sleep
		if v = w.word.Load(); v&pidMask != pid {
			return false, nil // someone else took it over
		}
	}
	w.owner.Store(selfRec)
	if !w.internal && w.state.Load() == stateNotRecoverable {
		w.release()
		return true, ErrNotRecoverable
	}
	w.state.Store(stateInconsistent)
	return true, ErrOwnerDead
}

// release unlocks and wakes a sleeper if there may be one.
func (w *mutexWords) release() {
	w.owner.Store(0)
	if w.word.Swap(0)&waitersBit != 0 {
		futex.Wake(addr(w.word), 1)
	}
}

// held returns the lock word if this process holds the lock, and
// ErrNotLocked or ErrNotOwner if it does not.
func (w *mutexWords) held() (uint32, error) {
	v := w.word.Load()
	switch {
	case v&pidMask == 0:
		return v, ErrNotLocked
	case v&pidMask != self.pid:
		return v, ErrNotOwner
	}
	return v, nil
}

// unlockChecked is Unlock: it refuses a lock the process does not hold.
func (w *mutexWords) unlockChecked() error {
	v, err := w.held()
	if err != nil {
		return err
	}
	// The pid bits cannot change under us: only we or a recoverer (who
	// needs us dead) write them while we hold the lock.
	if w.state.Load() == stateInconsistent {
		w.state.Store(stateNotRecoverable)
	}
	if v&waitersBit == 0 {
		w.owner.Store(0)
		if w.word.CompareAndSwap(v, 0) {
			return nil
		}
	}
	w.release()
	return nil
}

func (w *mutexWords) markConsistent() error {
	if _, err := w.held(); err != nil {
		return err
	}
	if w.state.Load() != stateConsistent {
		w.state.Store(stateConsistent)
	}
	return nil
}

// Internal locks (the guard of a Semaphore or Barrier) recover from a dead
// holder themselves: lockRepair calls repair with the lock held after
// ErrOwnerDead (or a state that no code writes), then marks the lock
// consistent. An internal lock is never unlocked inconsistent, so it
// never becomes unrecoverable unless its memory is overwritten; then it is
// repaired the same way.
func (w *mutexWords) lockRepair(ctx context.Context, repair func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var err error
	if w.word.CompareAndSwap(0, self.pid) {
		err = w.acquired()
	} else {
		err = w.lock(ctx)
	}
	if errors.Is(err, ErrOwnerDead) {
		repair()
		w.state.Store(stateConsistent)
		return nil
	}
	return err
}

func (w *mutexWords) unlock() {
	w.owner.Store(0)
	if !w.word.CompareAndSwap(self.pid, 0) {
		w.release()
	}
}

// Adaptive spinning
//
// A spinner is the process-local spin budget of one lock, in nanoseconds.
// A locker that missed the fast path polls the word (yielding its P every
// few polls, so a holder goroutine of this process can run) until it takes
// the lock or the budget runs out, then sleeps on the futex. If spinning won
// the lock after more than half the budget, the budget grows by a quarter:
// a little more might have won the next one too. If it ran out, the budget
// shrinks by an eighth: the holder keeps the lock for longer than a spin is
// worth. A win early in the budget leaves it alone. The budget stays within
// [spinMin, spinMax]: spinMin keeps probing cheaply when spinning does not
// pay; spinMax is about two futex wake-ups on a VM. Concurrent updates from
// goroutines race benignly (the budget is a hint).
const (
	spinMin   = 1_000  // ns
	spinStart = 8_000  // ns
	spinMax   = 64_000 // ns
	spinPolls = 8      // polls between yields and clock reads
)

type spinner struct {
	budget atomic.Int64 // ns; 0 until first used
	off    bool         // set by benchmarks before use: never spin
}

// spin polls w until it takes the lock (CAS 0 -> pid) or the budget runs
// out, and reports whether it took it.
func (s *spinner) spin(w *atomic.Uint32) bool {
	if s == nil || s.off {
		return false
	}
	budget := s.budget.Load()
	if budget == 0 {
		budget = spinStart
	}
	begin := time.Now()
	for {
		for range spinPolls {
			if w.Load() == 0 && w.CompareAndSwap(0, self.pid) {
				if el := time.Since(begin).Nanoseconds(); el > budget/2 {
					s.budget.Store(min(spinMax, budget+budget/4))
				}
				return true
			}
		}
		if time.Since(begin).Nanoseconds() >= budget {
			s.budget.Store(max(spinMin, budget-budget/8))
			return false
		}
		runtime.Gosched()
	}
}
