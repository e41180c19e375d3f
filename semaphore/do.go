package semaphore

import (
	"context"
	"errors"
	"fmt"
)

// Python's `with lock:`
//
// Do is the body of a `with lock:` block in one call: lock, run fn,
// unlock, whatever fn returns. What it cannot do for the caller is judge
// data that a dead holder may have left half-updated. So:
//
//   - Do never runs fn on such data. When the lock comes with
//     ErrOwnerDead, Do unlocks it without MarkConsistent, which makes the
//     lock unrecoverable (see the package doc, "Owner death"): every later
//     Lock fails with ErrNotRecoverable instead of handing anyone data
//     nobody repaired. Do returns an error wrapping ErrOwnerDead.
//   - DoRepair is Do for data that can be repaired: on ErrOwnerDead it
//     runs repair first, and only if repair returns nil marks the lock
//     consistent and runs fn. For data that is always consistent (each
//     update a single atomic store, a counter that a lost increment does
//     not corrupt), pass a repair that returns nil.
//
// This is the safe default because the alternative (run fn, then mark
// consistent) silently builds on a torn update, the one bug a robust lock
// exists to report.

// consistentLocker is a lock with POSIX robust semantics: Mutex and
// FileMutex (exclusive).
type consistentLocker interface {
	LockContext(ctx context.Context) error
	Unlock() error
	MarkConsistent() error
}

// do locks l, repairs with repair (nil: refuse) after a dead holder, runs
// fn and unlocks.
func do(ctx context.Context, l consistentLocker, repair, fn func() error) (err error) {
	lerr := l.LockContext(ctx)
	if lerr != nil && !errors.Is(lerr, ErrOwnerDead) {
		return lerr
	}
	defer func() { err = errors.Join(err, l.Unlock()) }()
	if lerr != nil {
		if repair == nil {
			return fmt.Errorf("semaphore: the lock's holder died; Do ran nothing and left the lock not recoverable (use DoRepair): %w", lerr)
		}
		if rerr := repair(); rerr != nil {
			return errors.Join(fmt.Errorf("semaphore: repair after the lock's holder died: %w", rerr), lerr)
		}
		if merr := l.MarkConsistent(); merr != nil {
			return merr
		}
	}
	return fn()
}

// Do runs fn with m locked, like Python's `with lock:`, and returns fn's
// error, joined to Unlock's if that fails. It gives up on ctx as
// [Mutex.LockContext] does, returning ctx.Err() without running fn. If
// m's previous holder died holding it, Do does not run fn: it unlocks m
// unrepaired, which makes it not recoverable, and returns an error
// wrapping [ErrOwnerDead]. Use [Mutex.DoRepair] where the data can be
// repaired. See "Python's `with lock:`" in the source for why. If fn (or
// a repair) panics, Do unlocks m and the panic goes on, as Python's `with`
// releases the lock on an exception: fn must leave the data consistent
// before it panics, as before it returns an error.
func (m *Mutex) Do(ctx context.Context, fn func() error) error { return do(ctx, m, nil, fn) }

// DoRepair is [Mutex.Do] that, when m's previous holder died holding it,
// runs repair first (m held), and if repair returns nil marks m consistent
// and runs fn; if repair fails, it returns repair's error joined to
// [ErrOwnerDead], and m becomes not recoverable.
func (m *Mutex) DoRepair(ctx context.Context, repair, fn func() error) error {
	return do(ctx, m, repair, fn)
}

// Do runs fn with m locked exclusively; see [Mutex.Do], whose rules it
// follows.
func (m *FileMutex) Do(ctx context.Context, fn func() error) error { return do(ctx, m, nil, fn) }

// DoRepair is [FileMutex.Do] with a repair; see [Mutex.DoRepair].
func (m *FileMutex) DoRepair(ctx context.Context, repair, fn func() error) error {
	return do(ctx, m, repair, fn)
}
