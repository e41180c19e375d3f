package semaphore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// Condition variable
//
// A Condition is a Mutex (the first MutexSize bytes) followed by a futex
// sequence word and a counts word. A waiter, holding the Mutex, counts
// itself in (waiters+1) and reads the sequence word s; then it unlocks and
// sleeps on the sequence word while it still holds s (robust.WaitValue).
// A notifier, holding the Mutex, adds min(n, waiters-signals) signals,
// bumps the sequence word, and wakes that many sleepers (FUTEX_WAKE n). A
// waiter that sees the sequence word move past the value it registered
// under takes one signal (waiters-1 and signals-1 in one CAS of the counts
// word) and returns; if none is left, another waiter took it, and it
// reads the word again and sleeps on. It reads the word before it tries to
// take a signal, so a Notify landing between a failed take and the next
// sleep changes the word and ends that sleep: no notification is lost.
// Because the futex compares the sequence word, a Notify that comes
// between a waiter's Unlock and its sleep is not lost either.
//
// Exactly n waiters return for a Notify(n) (fewer if fewer wait): signals
// never exceed the waiters counted in, and each waiter takes at most one.
// Which of the waiters that were there when Notify ran takes a signal is
// not fixed (no FIFO, as in POSIX); a waiter that came after a Notify
// never takes that Notify's signal, since it registered under the new
// sequence value.
//
// A waiter that gives up (its ctx done) takes a signal if one is there for
// it (the sequence word moved since it registered), and then returns nil,
// notified: a Notify racing a timeout is never lost. Otherwise it counts
// itself out. A waiter whose handle is closed counts itself out, and if
// that leaves more signals than waiters, drops the surplus.
//
// A waiter killed while it waits stays counted in: nobody can tell it from
// a live waiter asleep. It never takes a signal, so a Notify meant for the
// living still reaches them (the signals are not addressed to a waiter:
// any waiter that was there takes one). What it costs is the other way:
// a Notify with no live waiter to take its signal leaves that signal
// pending (at most one per dead waiter), and the next Notify can then
// release that many waiters more than it asked for. Callers of Wait must
// re-check their predicate anyway (WaitFor does): that is a spurious
// wake-up, which every condition variable allows. Dead waiters are not
// pruned: that would take a slot per waiter holding its liveness token (as
// a Barrier's arrivals have), so a bound on waiters, a size that grows
// with it, and a scan of the slots in every Notify, where now a Condition
// is 32 bytes for any number of waiters and Notify is one CAS.
//
// Layout: ConditionSize bytes at an 8-byte aligned offset; zeroed memory
// holds a Condition with its Mutex unlocked and nobody waiting.
// TestLayout pins the offsets.
const (
	// offCondMutex is the Mutex (internal/robust's lock: MutexSize bytes).
	offCondMutex = 0
	// offCondSeq (uint32) is the futex word waiters sleep on. Written by
	// Notify (Add, with the Mutex held); read by waiters. Bytes 20 to 23
	// are reserved, zero.
	offCondSeq = 16
	// offCondCounts (uint64) holds the waiters counted in (high 32 bits)
	// and the signals pending for them (low 32 bits; never more than the
	// waiters). Written by CAS: by waiters counting in (with the Mutex
	// held), taking a signal or counting out (without it), and by Notify
	// (with it). Read by all of them.
	offCondCounts = 24
)

// condHooks, if set (by tests), run where a Notify must not be lost: in
// Wait between the Unlock and the sleep (unlocked), between a sleep's end
// on ctx and the waiter's counting out (gaveUp), and between a failed take
// and the next sleep (takeFailed).
var condHooks struct{ unlocked, gaveUp, takeFailed func() }

func hook(f func()) {
	if f != nil {
		f()
	}
}

// ConditionSize is the number of bytes a [Condition] takes in a segment.
const ConditionSize = 32

// Condition is a condition variable in shared memory with its own [Mutex],
// like Python's multiprocessing.Condition: processes holding the Mutex wait
// in [Condition.Wait] until another notifies them with [Condition.Notify]
// or [Condition.NotifyAll]. See "Condition variable" in the source for how
// no notification is lost, and what a waiter killed while it waits costs.
//
// The Mutex is robust, as every Mutex is: when its holder dies, the next
// holder, a waiter returning from Wait included, gets [ErrOwnerDead] with
// the Mutex held (see the package doc, "Owner death").
//
// A *Condition is safe for concurrent use by goroutines and processes
// (Close aside: see the package doc, "Closing"), and may be passed to a
// child process (see the package doc, "Sharing"). A Condition must not be
// copied. The zero Condition is not usable: get one from [NewCondition],
// [CreateCondition], [OpenCondition] or [ConditionAt]. Zeroed shared memory
// holds a Condition nobody waits on, its Mutex unlocked. No method returns a
// slice.
type Condition struct {
	object
	mutex  *Mutex
	seq    *atomic.Uint32
	counts *atomic.Uint64
}

// NewCondition returns a Condition in an anonymous segment of its own.
func NewCondition() (*Condition, error) {
	return own(conditionAt)(shm.KindCondition.CreateAnonymous(ConditionSize))
}

// CreateCondition returns a Condition in a new named segment; see
// [shm.Create] for the name and for opts (nil for the defaults).
func CreateCondition(name string, opts *shm.Options) (*Condition, error) {
	return own(conditionAt)(shm.KindCondition.Create(name, ConditionSize, opts))
}

// OpenCondition opens the Condition in the named segment made by
// [CreateCondition].
func OpenCondition(name string) (*Condition, error) {
	return own(conditionAt)(shm.KindCondition.Open(name))
}

// ConditionAt places a Condition at off (a multiple of 8) in seg.Bytes(),
// which must hold ConditionSize bytes there: zeroed, or a Condition. It
// does not own seg.
func ConditionAt(seg *shm.Segment, off int) (*Condition, error) {
	c, _, err := conditionAt(seg, off)
	return c, err
}

func conditionAt(seg *shm.Segment, off int) (*Condition, *object, error) {
	c := new(Condition)
	if err := c.attach(seg, off); err != nil {
		return nil, nil, err
	}
	return c, &c.object, nil
}

func (c *Condition) attach(seg *shm.Segment, off int) error {
	if err := c.place(seg, off, ConditionSize); err != nil {
		return err
	}
	m, err := MutexAt(seg, off+offCondMutex)
	if err != nil {
		return err
	}
	c.mutex, c.seq, c.counts = m, u32(c.mem, offCondSeq), u64(c.mem, offCondCounts)
	return checkCounts(c.counts.Load())
}

// checkCounts returns an error wrapping ErrCorrupt for a counts word that
// no Condition holds: more signals than waiters, or as many waiters as
// one more would wrap around.
func checkCounts(v uint64) error {
	if w, s := splitCounts(v); s > w || w == 1<<32-1 {
		return fmt.Errorf("semaphore: condition with %d signals for %d waiters: %w", s, w, ErrCorrupt)
	}
	return nil
}

func splitCounts(v uint64) (waiters, signals uint32) { return uint32(v >> 32), uint32(v) }

func joinCounts(waiters, signals uint32) uint64 { return uint64(waiters)<<32 | uint64(signals) }

// Mutex returns the Condition's Mutex. Its methods are the Condition's
// Lock, Unlock, ...: use either.
func (c *Condition) Mutex() *Mutex { return c.mutex }

// Lock locks the Condition's Mutex; see [Mutex.Lock].
func (c *Condition) Lock() error { return c.mutex.Lock() }

// LockContext locks the Condition's Mutex unless ctx is done first; see
// [Mutex.LockContext].
func (c *Condition) LockContext(ctx context.Context) error { return c.mutex.LockContext(ctx) }

// Unlock unlocks the Condition's Mutex; see [Mutex.Unlock].
func (c *Condition) Unlock() error { return c.mutex.Unlock() }

// MarkConsistent marks the Condition's Mutex consistent after
// [ErrOwnerDead]; see [Mutex.MarkConsistent].
func (c *Condition) MarkConsistent() error { return c.mutex.MarkConsistent() }

// Do runs fn with the Condition's Mutex held; see [Mutex.Do].
func (c *Condition) Do(ctx context.Context, fn func() error) error { return c.mutex.Do(ctx, fn) }

// held returns nil if this process holds the Mutex, consistent; otherwise
// [ErrNotLocked], [ErrNotOwner], or, for a Mutex taken over from a dead
// holder and not yet marked consistent, an error wrapping [ErrOwnerDead]
// (Wait would unlock it, which makes it unrecoverable).
func (c *Condition) held(op string) error {
	if c.closed() {
		return os.ErrClosed
	}
	h, inconsistent := c.mutex.lock.Holder()
	switch {
	case h == 0:
		return fmt.Errorf("semaphore: condition %s without its mutex: %w", op, ErrNotLocked)
	case h != c.mutex.lock.Token():
		return fmt.Errorf("semaphore: condition %s while another process holds its mutex: %w", op, ErrNotOwner)
	case inconsistent:
		return fmt.Errorf("semaphore: condition %s on a mutex not marked consistent after its holder died (repair, then MarkConsistent): %w", op, ErrOwnerDead)
	}
	return nil
}

// Wait unlocks the Mutex, which the caller must hold (in this process),
// waits until a [Condition.Notify] or [Condition.NotifyAll] releases it or
// ctx is done, and locks the Mutex again before it returns, as Python's
// wait does.
//
// It returns nil when notified (also when ctx ended just as the
// notification came: it is not lost), ctx.Err() when ctx is done first,
// and, joined to either, [ErrOwnerDead] when the Mutex's holder died
// meanwhile: in all these cases the Mutex is held again. It returns
// without the Mutex: [os.ErrClosed] when the handle is closed, and
// [ErrNotRecoverable] or [ErrCorrupt] (joined) from the Mutex. Without the
// Mutex held on entry it returns [ErrNotLocked] or [ErrNotOwner], and with
// the Mutex taken over from a dead holder but not yet marked consistent,
// an error wrapping [ErrOwnerDead], changing nothing. A counts word no
// Condition holds is [ErrCorrupt]: on entry, changing nothing; for a
// waiter asleep when it was found (a Notify that finds it wakes every
// waiter), with the Mutex held again.
//
// Like every condition variable, a Wait may return when the state it
// waits for is not there (a waiter killed while waiting can cause one
// spurious return): check it in a loop, or use [Condition.WaitFor].
func (c *Condition) Wait(ctx context.Context) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.leave()
	if err := c.held("wait"); err != nil {
		return err
	}
	if err := checkCounts(c.counts.Load()); err != nil {
		return err
	}
	c.counts.Add(1 << 32)
	s := c.seq.Load() // under the Mutex, which every Notify holds
	if err := c.mutex.Unlock(); err != nil {
		c.countOut()
		return err
	}
	hook(condHooks.unlocked)
	werr := c.sleep(ctx, s)
	if errors.Is(werr, os.ErrClosed) {
		return werr
	}
	return errors.Join(werr, c.mutex.Lock())
}

// sleep waits, the Mutex unlocked, for a signal given after the sequence
// word moved from s (the value the waiter registered under). It returns
// nil with a signal taken, or the wait's error with the waiter counted out.
func (c *Condition) sleep(ctx context.Context, s uint32) error {
	opts := &robust.WaitOptions{Closer: &c.closer}
	registered := s
	for {
		err := robust.WaitValue(ctx, c.seq, s, opts)
		if err != nil {
			hook(condHooks.gaveUp)
			if !c.closed() && c.seq.Load() != registered && c.take() {
				return nil // notified as it gave up: the notification is not lost
			}
			c.countOut()
			return err
		}
		s = c.seq.Load() // before take: a Notify after a failed take moves it
		if c.take() {
			return nil
		}
		if err := checkCounts(c.counts.Load()); err != nil {
			return err // woken by a Notify that found the counts corrupt
		}
		hook(condHooks.takeFailed)
	}
}

// take takes a signal, counting the waiter out, and reports whether there
// was one.
func (c *Condition) take() bool {
	for {
		v := c.counts.Load()
		w, s := splitCounts(v)
		if s == 0 || w == 0 {
			return false
		}
		if c.counts.CompareAndSwap(v, joinCounts(w-1, s-1)) {
			return true
		}
	}
}

// countOut counts a waiter that gives up out, dropping a signal that no
// waiter is left to take.
func (c *Condition) countOut() {
	for {
		v := c.counts.Load()
		w, s := splitCounts(v)
		if w == 0 {
			return // impossible unless the memory is corrupt: leave it
		}
		if c.counts.CompareAndSwap(v, joinCounts(w-1, min(s, w-1))) {
			return
		}
	}
}

// WaitFor waits until pred reports true, calling it with the Mutex held
// (which the caller must hold, as for [Condition.Wait]) first and after
// each wake-up, like Python's wait_for. It returns nil once pred is true;
// when ctx is done first, ctx.Err() (pred was false at its last call, made
// after ctx ended). It returns at once, the Mutex held, with an error
// wrapping [ErrOwnerDead] when the Mutex's holder died meanwhile, without
// calling pred: repair, MarkConsistent and call WaitFor again. Its other
// errors are Wait's. If pred panics, the panic goes on with the Mutex held
// (pred runs only with it held), so that the caller's deferred Unlock
// releases it as after any return.
func (c *Condition) WaitFor(ctx context.Context, pred func() bool) error {
	for !pred() {
		if err := c.Wait(ctx); err != nil {
			timedOut := ctx.Err() != nil && errors.Is(err, ctx.Err()) && !errors.Is(err, ErrOwnerDead)
			if timedOut && pred() {
				return nil
			}
			return err
		}
	}
	return nil
}

// Notify wakes up to n waiters (Python's notify(n)); the caller must hold
// the Mutex (in this process), or it gets [ErrNotLocked] or [ErrNotOwner].
// A negative n is an error wrapping [os.ErrInvalid]; 0 does nothing. A
// counts word no Condition holds is [ErrCorrupt], and wakes every waiter
// so that none sleeps on for a notification that cannot come.
func (c *Condition) Notify(n int) error {
	if n < 0 {
		return fmt.Errorf("semaphore: notify %d waiters, want at least 0: %w", n, os.ErrInvalid)
	}
	if err := c.held("notify"); err != nil && !errors.Is(err, ErrOwnerDead) {
		return err
	}
	for {
		v := c.counts.Load()
		if err := checkCounts(v); err != nil {
			// Wake every waiter, which finds the counts corrupt too,
			// rather than leave them asleep for a Notify that never comes.
			c.seq.Add(1)
			futex.Wake(addr(c.seq), 1<<31-1)
			return err
		}
		w, s := splitCounts(v)
		add := uint32(min(uint64(n), uint64(w-s)))
		if add == 0 {
			return nil
		}
		if c.counts.CompareAndSwap(v, joinCounts(w, s+add)) {
			c.seq.Add(1)
			futex.Wake(addr(c.seq), int(add))
			return nil
		}
	}
}

// NotifyAll wakes every waiter (Python's notify_all); the caller must hold
// the Mutex, as for [Condition.Notify].
func (c *Condition) NotifyAll() error { return c.Notify(1 << 31) }

// Waiting returns the number of waiters counted in: those in Wait, and any
// killed while they waited (see [Condition]). It is a snapshot.
func (c *Condition) Waiting() int {
	w, _ := splitCounts(c.counts.Load())
	return int(w)
}

// Segment returns the segment c lives in.
func (c *Condition) Segment() *shm.Segment { return c.seg }

// Offset returns c's offset in [shm.Segment.Bytes].
func (c *Condition) Offset() int { return c.off }

// Close releases the Condition's own segment, if it made or opened one,
// and returns [os.ErrClosed] to this process's calls waiting in Wait (they
// return without the Mutex) or for the Mutex, and to every later call. It
// does not unlock the Mutex. It is safe to call twice.
func (c *Condition) Close() error {
	// The Mutex first: a waiter relocking it must leave before
	// c.close waits for this process's calls.
	return errors.Join(c.mutex.Close(), c.close(c.seq))
}

// GobEncode encodes a handle to c; see the package doc.
func (c *Condition) GobEncode() ([]byte, error) { return c.encode() }

// GobDecode attaches c, which must be new, to the Condition a handle names.
func (c *Condition) GobDecode(b []byte) error {
	return decode(b, func(seg *shm.Segment, off int) (*object, error) {
		return &c.object, c.attach(seg, off)
	})
}
