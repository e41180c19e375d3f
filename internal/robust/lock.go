package robust

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/release"
	"github.com/ipckit/ipckit/internal/sentinel"
)

// Robust lock
//
// A Lock is two words in shared memory: a 64-bit lock word, which is also
// the owner record, and a 32-bit sleepers word (see "Waiting"). The lock
// word is
//
//	0                   free
//	token               held by the process whose liveness token that is
//	token | 1<<62       held, inconsistent: its holder took it over from a
//	                    dead one and has not called MarkConsistent yet
//	1<<63               not recoverable (terminal): an inconsistent lock
//	                    was unlocked without MarkConsistent
//
// where token is a valid [liveness.Token] (bits 0..61, never 0). Any other
// value is impossible, and every operation that meets one returns
// ErrCorrupt without touching it: it never panics, never waits on it.
//
// Layout (Size bytes when placed with At; New takes the two words wherever
// the caller keeps them, the lock word 8-aligned, the sleepers word
// 4-aligned; every access is a sync/atomic operation):
//
//	off size field     written by                        read by
//	  0    8 word      lockers (CAS 0 -> token); the     everyone
//	                   holder (CAS -> 0, release store
//	                   0, CAS -> not recoverable,
//	                   MarkConsistent's CAS); a taker-
//	                   over (CAS from the dead word)
//	  8    4 sleepers  sleepers (CAS: set bit 0; Or on   wakers (load, then
//	                   re-arm); wakers (CAS: bump)       CAS); the futex word
//	 12    4 reserved  nobody: zero                      nobody
//
// The uncontended path is one locked instruction each way, as in glibc's
// robust mutex. Lock is a CAS 0 -> token: the holder's identity is written
// by the same instruction that takes the lock, so there is no moment when
// the lock is held with no owner recorded, and no owner record to store
// separately (ipckit's Mutex used to store one, with a second locked
// instruction in each of Lock and Unlock). Unlock is a CAS token -> 0 (which
// fails when the word holds a flag or another owner: then the slow path
// decides), followed by an ordinary atomic load of the sleepers word, which
// is a plain MOV on amd64 and an LDAR on arm64: FUTEX_WAKE only if a
// sleeper announced itself. Callers that already make a full fence after
// unlocking (the queue's counter Add) can unlock with a release store
// instead (UnlockRelease, then WakeWaiters).
//
// Waiting. A locker that finds the lock held spins (adaptively, see
// Spinner), then announces itself on the sleepers word, re-checks the lock
// word, and sleeps. Unlock wakes one sleeper (FUTEX_WAKE 1), not all: many
// goroutines of one process may wait for a queue's consumer lock, and a
// herd of woken threads would fight for it. Waking one clears the
// announcement bit while other sleepers may remain, so, as in Drepper's
// "Futexes are tricky" (mutex 3), a locker that slept re-arms the bit once
// it has the lock (its Unlock then wakes the next), and a woken locker that
// gives up (ctx, Close) passes the wake on: it re-arms the bit and, if the
// lock is free, wakes one. The sleepers that were not woken keep following
// the previous holder (see below): a holder that will keep the lock for
// long calls WakeAllWaiters once, so that they follow it. TestNoLostWakeups
// plays hand-offs in which every wake-up matters.
//
// A dead holder. A waiter checks the holder named by the lock word with
// liveness.Check (an F_OFD_GETLK on the holder's registry byte: valid in
// every PID namespace) when it first finds the lock held by another process
// (unless this handle found that holder alive within the last
// CheckPeriod). It then sleeps with no timeout but its deadline and a slow
// back-off timer, following the holder: the kernel tells it the moment the
// holder dies (watch.go, "Watching holders"). And it checks once more
// before it gives up on a deadline or a cancellation. A holder that is Dead
// (never merely Unknown) is taken over with a CAS from the very word that
// was checked, to self | inconsistent (or self, for an internal lock), so
// of several waiters that found it dead exactly one wins, and a holder that
// unlocked meanwhile is never mistaken for the dead one. The winner gets
// sentinel.ErrOwnerDead with the lock held. TryLock does the same check on
// a held lock at once.
//
// Goroutines of one process share its token: the lock excludes them from
// each other like a sync.Mutex, and, like a sync.Mutex, any of them may
// unlock it. A waiter whose holder is its own process does not check
// liveness (it is alive) and is not watched.
//
// Consistency (pthread robust mutexes: EOWNERDEAD, pthread_mutex_consistent,
// ENOTRECOVERABLE). A lock taken over stays inconsistent until its holder
// calls MarkConsistent; if that holder dies too, the next one gets
// ErrOwnerDead again. Unlocking an inconsistent lock makes it not
// recoverable: every later Lock returns ErrNotRecoverable without it, so
// nobody works on data that nobody repaired. An internal lock (the queue's
// locks, a semaphore's guard: Options.Internal) is repaired by whoever
// takes it over before it does anything else, so it never records
// inconsistency, and a not-recoverable word (memory overwritten) is taken
// over like a dead holder's, to be repaired the same way.
//
// Memory ordering (and why this holds on arm64, not just on x86's TSO).
// Every access to the two shared words is a sync/atomic operation, which
// the Go memory model makes sequentially consistent; no plain load or store
// of a shared word relies on x86's store order. The places that would
// break on a weak memory model if they were plain:
//
//   - Unlock's CAS (or UnlockRelease's release store: STLR on arm64) is
//     the release that publishes the critical section's writes; the next
//     holder's CAS is the acquire that pairs with it. A plain store on
//     arm64 could make the word 0 visible before the data it guards.
//   - The waker's load of the sleepers word must come after its release
//     of the lock word, and the waiter's re-check of the lock word after
//     its announcement: the Dekker pair of "Waiting". Unlock's CAS is a
//     full fence; after UnlockRelease the caller must make one (an atomic
//     read-modify-write) before WakeWaiters. A release store followed by
//     a load may be reordered on amd64 too (the store buffer), and such a
//     lost wake-up would leave a waiter asleep until its next slow check,
//     or forever when it has none.
//   - A takeover acts on what the dead holder wrote: the holder's stores
//     precede its death; the kernel drops its OFD lock at exit under the
//     inode's lock-list spinlock, which the waiter's F_OFD_GETLK takes too,
//     so the holder's writes happen before the waiter's "dead" verdict, and
//     the takeover CAS (which fails unless the word still names the dead
//     holder) comes after that.
//
// Lock, TryLockFree and a takeover are CASes (acquire); Unlock is a CAS
// (a full fence on every platform, qemu included) and then the load of
// the sleepers word; UnlockRelease is release.Store64 (a plain MOV on
// amd64, STLR on arm64), and its callers (ipcqueue's Put and Get) make the
// fence with an atomic add. A waiter announces itself with a CAS on bit 0
// of the sleepers word, then re-checks; when the bit is already set it
// makes no read-modify-write, and the futex covers that case: the kernel
// compares the word with the value the waiter saw, so a bump in between
// ends the sleep at once.
//
// Emulation cannot check this. qemu-user on x86 emits arm64's STLR as a
// fence then a store and LDAR as a load then a fence, so Go's sequentially
// consistent Store followed by a Load of another word is not ordered there
// (internal/release's TestStoreBuffering sees the forbidden outcome),
// while the orderings arm64 weakens stay x86's. Only read-modify-writes
// (host LOCK instructions) keep their meaning. So .ci/arm64 skips the
// tests whose verdict rests on ordering (exclusion under contention, lost
// wake-ups), and arm64 ordering rests on this argument.
//
// The race detector sees sync/atomic operations on the Go heap but not on a
// mapping, so a Lock tells it about each acquire and release on a heap
// stand-in of its own (race.go): goroutines sharing data guarded by a Lock
// over mapped memory must share the *Lock. On a heap buffer (At over a
// make([]byte)) the detector also sees the words themselves.

const (
	flagInconsistent = 1 << 62
	notRecoverable   = 1 << 63
	tokenMask        = uint64(liveness.Mask)
)

// Size is the number of bytes [At] uses: the lock word (8 bytes at offset
// 0), the sleepers word (4 bytes at offset 8) and 4 reserved bytes, zero.
// Zeroed memory holds a free lock.
const Size = 16

// Offsets of the words in the Size bytes At uses; TestLayout pins them.
const (
	OffWord     = 0
	OffSleepers = 8
)

// Options configures a [Lock] handle. A nil *Options means the defaults.
type Options struct {
	// Spin is the longest spin before sleeping: 0 means [DefaultSpin], a
	// negative value never spins.
	Spin time.Duration
	// Waits, if set, counts this handle's futex sleeps (a shared counter,
	// for statistics).
	Waits *atomic.Uint64
	// Closer, if set, is the handle's: once it is closed, TryLock,
	// RecoverDead and a Lock that does not get the lock at once return
	// os.ErrClosed, and Lock's sleepers are woken ([Closer.Close] with the
	// lock's [Lock.Sleepers] word). Lock's uncontended path does not look
	// at it: a caller that must refuse a closed handle checks
	// [Closer.Closed] first.
	Closer *Closer
	// Internal makes a lock that its taker repairs at once: a takeover
	// does not mark it inconsistent, and a not-recoverable word is taken
	// over like a dead holder's (see "Robust lock").
	Internal bool
}

// Lock is one process's handle to a robust lock in shared memory: see
// "Robust lock". A *Lock is safe for concurrent use by any number of
// goroutines; it must not be copied. The zero Lock is not usable: get one
// from [New] or [At]. Several handles (in one process or many) may share
// the same words.
type Lock struct {
	_        noCopy
	word     *atomic.Uint64
	fx       *atomic.Uint32
	me       uint64 // this process's token
	internal bool
	closer   *Closer
	waits    *atomic.Uint64
	spin     Spinner
	race     unsafe.Pointer // heap stand-in for the race detector (race.go)

	// The holder last found alive, and when (UnixNano): a waiter skips
	// the check at its first sleep for that holder within CheckPeriod.
	aliveTok atomic.Uint64
	aliveAt  atomic.Int64
}

// New returns a handle to the lock whose lock word is word and whose
// sleepers word is sleepers; both must stay valid (mapped) as long as the
// handle is used. It fails if this process cannot get a liveness token.
func New(word *atomic.Uint64, sleepers *atomic.Uint32, opts *Options) (*Lock, error) {
	me, err := liveness.Self()
	if err != nil {
		return nil, fmt.Errorf("robust: %w", err)
	}
	if word == nil || sleepers == nil {
		return nil, fmt.Errorf("robust: nil word: %w", os.ErrInvalid)
	}
	l := &Lock{word: word, fx: sleepers, me: uint64(me), race: newRaceAddr()}
	var spin time.Duration
	if opts != nil {
		spin, l.waits, l.closer, l.internal = opts.Spin, opts.Waits, opts.Closer, opts.Internal
	}
	l.spin.SetMax(spin)
	return l, nil
}

// At returns a handle to the lock held in b[:Size], which must be 8-byte
// aligned: zeroed memory (a free lock) or a lock.
func At(b []byte, opts *Options) (*Lock, error) {
	if len(b) < Size {
		return nil, fmt.Errorf("robust: %d bytes cannot hold a lock (%d): %w", len(b), Size, os.ErrInvalid)
	}
	if uintptr(unsafe.Pointer(&b[0]))%8 != 0 {
		return nil, fmt.Errorf("robust: misaligned lock: %w", os.ErrInvalid)
	}
	return New((*atomic.Uint64)(unsafe.Pointer(&b[OffWord])), (*atomic.Uint32)(unsafe.Pointer(&b[OffSleepers])), opts)
}

// Sleepers returns the lock's sleepers word (for [Closer.Close]).
func (l *Lock) Sleepers() *atomic.Uint32 { return l.fx }

// Token returns the token this handle locks with (this process's).
func (l *Lock) Token() liveness.Token { return liveness.Token(l.me) }

// Holder returns the token of the lock's holder (0 if it is free or not
// recoverable) and whether it is marked inconsistent. It is a snapshot.
func (l *Lock) Holder() (holder liveness.Token, inconsistent bool) {
	w := l.word.Load()
	if w == notRecoverable || !valid(w) {
		return 0, false
	}
	return liveness.Token(w & tokenMask), w&flagInconsistent != 0
}

// Lock takes the lock, waiting as long as a live holder holds it. It
// returns nil; or [sentinel.ErrOwnerDead] with the lock held, taken over
// from a holder that died (repair what it guards, then MarkConsistent); or,
// without the lock: [sentinel.ErrNotRecoverable], an error wrapping
// [sentinel.ErrCorrupt] for an impossible word, ctx.Err() (or
// context.DeadlineExceeded at the deadline) when ctx is done first, but
// only after a last look at the holder, or [os.ErrClosed].
func (l *Lock) Lock(ctx context.Context) error {
	if l.word.CompareAndSwap(0, l.me) {
		raceAcquire(l.race)
		return nil
	}
	return l.lockSlow(ctx)
}

// TryLockFree takes the lock if it is free, and reports whether it did. It
// never checks a holder and never fails: the hot path of callers that
// fall back to [Lock.Lock] or [Lock.TryLock].
func (l *Lock) TryLockFree() bool {
	if l.word.Load() == 0 && l.word.CompareAndSwap(0, l.me) {
		raceAcquire(l.race)
		return true
	}
	return false
}

// TryLock takes the lock if it is free, or if its holder is dead (then
// with [sentinel.ErrOwnerDead]), and reports whether it did. A lock held by
// a live process, this one included, or by one whose liveness is unknown,
// is false, nil. The errors are Lock's.
func (l *Lock) TryLock() (bool, error) {
	if l.closer.Closed() {
		return false, os.ErrClosed
	}
	for {
		w := l.word.Load()
		if w == 0 {
			if l.word.CompareAndSwap(0, l.me) {
				raceAcquire(l.race)
				return true, nil
			}
			continue
		}
		if err := l.unusable(w); err != nil {
			return false, err
		}
		ok, retry, err := l.takeOverIfDead(w, false)
		if !retry {
			return ok, err
		}
	}
}

// RecoverDead takes the lock over if its holder is dead, and reports
// whether it did (then with [sentinel.ErrOwnerDead]). Unlike TryLock it
// never takes a free lock: for callers that only look for a dead holder.
func (l *Lock) RecoverDead() (bool, error) {
	if l.closer.Closed() {
		return false, os.ErrClosed
	}
	for {
		w := l.word.Load()
		if w == 0 {
			return false, nil
		}
		if err := l.unusable(w); err != nil {
			return false, err
		}
		ok, retry, err := l.takeOverIfDead(w, false)
		if !retry {
			return ok, err
		}
	}
}

// Unlock releases the lock, which this process must hold, and wakes one
// sleeper if any announced itself. Unlocking a lock that is not held (or
// not recoverable) returns [ErrNotLocked], one held by another process
// [ErrNotOwner], an impossible word [sentinel.ErrCorrupt]; none of them
// changes it. Unlocking an inconsistent lock (after ErrOwnerDead, without
// MarkConsistent) releases it as not recoverable.
func (l *Lock) Unlock() error {
	raceRelease(l.race)
	released := l.word.CompareAndSwap(l.me, 0)
	if released && l.fx.Load()&1 == 0 {
		return nil
	}
	return l.unlockSlow(released)
}

// UnlockRelease releases the lock, which this process must hold, with a
// release store: no check, no fence, no wake. The caller must then make a
// full fence (any atomic read-modify-write) and call [Lock.WakeWaiters];
// see "Robust lock". An inconsistent mark is dropped: use it on internal
// locks, or after MarkConsistent.
func (l *Lock) UnlockRelease() {
	raceRelease(l.race)
	release.Store64(l.word, 0)
}

// WakeWaiters wakes one sleeper, if any announced itself: the second half
// of [Lock.UnlockRelease], after the caller's fence.
func (l *Lock) WakeWaiters() {
	if l.fx.Load()&1 != 0 {
		wakeOne(l.fx)
	}
}

// WakeAllWaiters wakes every sleeper on the lock, so that each looks at it
// again and follows its present holder. Unlock wakes one sleeper, so the
// others may sleep through a hand-off still following the previous holder;
// if the new one then dies, they find out only at their next slow check
// (up to MaxCheckPeriod; see "Watching holders"). A holder about to keep
// the lock for long (a queue consumer that waits for data holding the
// consumer lock) calls this once, and its death is then noticed at once.
func (l *Lock) WakeAllWaiters() { Wake(l.fx) }

// MarkConsistent tells the lock that what it guards was repaired after
// [sentinel.ErrOwnerDead]; the caller must hold it. It does nothing to a
// consistent lock.
func (l *Lock) MarkConsistent() error {
	for {
		w := l.word.Load()
		switch {
		case w == l.me:
			return nil
		case w == l.me|flagInconsistent:
			if l.word.CompareAndSwap(w, l.me) {
				return nil
			}
		default:
			return l.notMine(w)
		}
	}
}

// unlockSlow is Unlock when someone may sleep (released: the CAS has
// released the lock already; wake one) or the word was not simply ours.
func (l *Lock) unlockSlow(released bool) error {
	if released {
		wakeOne(l.fx)
		return nil
	}
	for {
		w := l.word.Load()
		switch {
		case w == l.me:
			if l.word.CompareAndSwap(w, 0) {
				l.WakeWaiters()
				return nil
			}
		case w == l.me|flagInconsistent:
			if l.word.CompareAndSwap(w, notRecoverable) {
				// Every sleeper must learn it: wake them all.
				WakeAll(l.fx)
				return nil
			}
		default:
			return l.notMine(w)
		}
	}
}

// notMine is the error for a lock word w that this process does not hold.
func (l *Lock) notMine(w uint64) error {
	switch {
	case w == 0 || w == notRecoverable:
		return ErrNotLocked
	case !valid(w):
		return corrupt(w)
	}
	return ErrNotOwner
}

// valid reports whether w is a possible lock word (see "Robust lock").
func valid(w uint64) bool {
	return w == 0 || w == notRecoverable || liveness.Token(w&^flagInconsistent).Valid()
}

func corrupt(w uint64) error {
	return fmt.Errorf("%w: lock word %#016x", sentinel.ErrCorrupt, w)
}

// unusable returns the error a locker gets from a held word w: not
// recoverable (unless internal), corrupt, or nil for a word naming a holder.
func (l *Lock) unusable(w uint64) error {
	switch {
	case w == notRecoverable:
		if l.internal {
			return nil
		}
		return sentinel.ErrNotRecoverable
	case !valid(w):
		return corrupt(w)
	}
	return nil
}

// takeOverIfDead takes the lock from the holder that the held word w
// names, if that holder is dead (or w is not recoverable on an internal
// lock). ok reports that it did, with err ErrOwnerDead; retry that the word
// changed under it (look again); neither, that the holder is alive, this
// process, or unknown. With cached, a holder found alive within the last
// CheckPeriod is not checked again.
func (l *Lock) takeOverIfDead(w uint64, cached bool) (ok, retry bool, err error) {
	if w != notRecoverable {
		holder := w & tokenMask
		if holder == l.me {
			return false, false, nil
		}
		now := time.Now().UnixNano()
		if cached && l.aliveTok.Load() == holder && now-l.aliveAt.Load() < int64(CheckPeriod) {
			return false, false, nil
		}
		if liveness.Check(liveness.Token(holder)) != liveness.Dead {
			l.aliveTok.Store(holder)
			l.aliveAt.Store(now)
			return false, false, nil
		}
	}
	next := l.me | flagInconsistent
	if l.internal {
		next = l.me
	}
	if !l.word.CompareAndSwap(w, next) {
		return false, true, nil
	}
	raceAcquire(l.race)
	return true, false, sentinel.ErrOwnerDead
}

// lockSlow is Lock once the first CAS failed.
func (l *Lock) lockSlow(ctx context.Context) error {
	if l.closer.Closed() {
		return os.ErrClosed
	}
	if w := l.word.Load(); w != 0 {
		if err := l.unusable(w); err != nil {
			return err
		}
	}
	ok, start := l.spin.Spin(l.TryLockFree)
	if ok {
		return nil
	}
	deadline, hasDeadline := ctx.Deadline()
	slept := false
	var wt *watched // created when a holder of another process is first waited for
	defer func() {
		if wt != nil {
			wt.stop()
		}
	}()
	for {
		f, ok := announce(l.fx)
		if !ok {
			continue
		}
		w := l.word.Load()
		if w == 0 {
			if l.word.CompareAndSwap(0, l.me) {
				return l.acquired(slept, start, nil)
			}
			continue
		}
		if err := l.unusable(w); err != nil {
			return l.giveUp(slept, err)
		}
		if l.closer.Closed() {
			return l.giveUp(slept, os.ErrClosed)
		}
		// Check the holder (see "A dead holder"): at once when first
		// waiting for another process (unless this handle found that
		// holder alive lately), when its death is notified, and on the
		// slow timer; then follow it.
		self := w != notRecoverable && w&tokenMask == l.me
		checked := false
		now := time.Now()
		if !self {
			first := wt == nil
			if first {
				wt = newWatched(l.fx)
			}
			if wt.due(now) {
				took, retry, err := l.takeOverIfDead(w, first)
				if took {
					return l.acquired(slept, time.Time{}, err)
				}
				if retry {
					continue
				}
				checked = true
			}
			if w != notRecoverable {
				wt.follow(liveness.Token(w & tokenMask))
			}
		} else if wt != nil {
			wt.follow() // our own process: nothing to follow
		}
		if err := expired(ctx, hasDeadline, deadline, now); err != nil {
			// One last look at the holder before giving up.
			if !self && !checked {
				if took, _, oerr := l.takeOverIfDead(w, false); took {
					return l.acquired(slept, time.Time{}, oerr)
				}
			}
			return l.giveUp(slept, err)
		}
		var until time.Time
		var follow *watched
		if !self {
			until, follow = wt.nextCheck(), wt
		}
		if hasDeadline && (until.IsZero() || deadline.Before(until)) {
			until = deadline
		}
		if err := sleep(ctx, l.closer, l.fx, f, until, hasDeadline && until.Equal(deadline), l.waits, follow); err != nil {
			return l.giveUp(true, err)
		}
		slept = true
	}
}

// acquired finishes a Lock that took the lock in its slow path: a locker
// that slept re-arms the sleepers bit, since the wake it got may have
// cleared it while others still sleep (see "Robust lock").
func (l *Lock) acquired(slept bool, start time.Time, err error) error {
	if slept {
		l.fx.Or(1)
		if !start.IsZero() {
			l.spin.Slept(start)
		}
	}
	raceAcquire(l.race)
	return err
}

// giveUp returns err from a Lock that did not get the lock. If it slept,
// the wake that ended its sleep may have been meant for a locker; pass it
// on: re-arm the bit (the holder's Unlock will wake someone) and, if the
// lock is free now, wake one.
func (l *Lock) giveUp(slept bool, err error) error {
	if slept {
		l.fx.Or(1)
		if l.word.Load() == 0 {
			wakeOne(l.fx)
		}
	}
	return err
}
