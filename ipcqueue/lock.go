package ipcqueue

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ipckit/ipckit/internal/release"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/internal/sentinel"
)

// Locks
//
// Each side of the queue (producers, consumers) has one lock: ipckit's
// robust lock (internal/robust, "Robust lock"), whose 64-bit word names
// its holder by the holder's liveness token, set by the same CAS that takes
// the lock, so a waiter never sees a lock without its owner; 0 means free.
// The hot paths take it with TryLockFree (one CAS, no liveness check) and
// release it with UnlockRelease (a release store), followed by the Put's
// or Get's counter add, its one full fence, and WakeWaiters: two locked
// instructions per Put and per Get (see layout.go, "Ordering").
//
// Both are internal locks (robust.Options.Internal): whoever takes one
// over from a dead holder repairs at once what the holder left, before it
// does anything else, so the lock never records inconsistency. Repairing
// the producer side is repairProducer (a record the holder claimed: dropped
// whole, or published if it was committed); the consumer side needs no
// repair (head is the single store that takes a message) and counts the
// death in Stats.ConsumerDeaths.
//
// A waiter for a lock held by another process follows the holder: the
// kernel tells it the moment the holder dies (robust, "Watching holders"),
// and it looks at the holder once more before it gives up on a deadline,
// however short: a dead holder is taken over, never reported as a timeout.
// A live holder, or one whose liveness cannot be proven, is waited for.
//
// The producer lock is held only while one record is written, never while
// waiting for space. A consumer holds the consumer lock while it waits for
// data (see Queue.getLocked), since the other consumers could not take
// anything either; before it first sleeps so, it wakes the lock's sleepers
// (Lock.WakeAllWaiters), which then follow it, the new holder, rather than
// the one they found when they went to sleep: its death is then noticed at
// once.

// newLocks returns handles to the producer and consumer locks of the
// control block ctl, for a handle whose Close is closer.
func newLocks(ctl []byte, closer *robust.Closer) (plock, clock *robust.Lock, err error) {
	opts := &robust.Options{Internal: true, Waits: u64At(ctl, offWaits), Closer: closer}
	if plock, err = robust.New(u64At(ctl, offPLock), u32At(ctl, offPLockFx), opts); err != nil {
		return nil, nil, err
	}
	clock, err = robust.New(u64At(ctl, offCLock), u32At(ctl, offCLockFx), opts)
	return plock, clock, err
}

// lockProducers takes the producer lock (block) or tries to, repairing
// what a dead holder left; errBusy means the lock is busy in try mode. The
// caller's call is counted: the lock may wait. Any other error means the
// lock is not held.
func (q *Queue) lockProducers(ctx context.Context, block bool) error {
	dead, err := lockSide(ctx, q.plock, block, "producer")
	if dead {
		return q.repairLocked()
	}
	return err
}

// lockConsumers takes the consumer lock (block) or tries to; errBusy
// means the lock is busy in try mode. A lock taken over from a dead
// consumer is counted. The caller's call is counted. Any other error means
// the lock is not held.
func (q *Queue) lockConsumers(ctx context.Context, block bool) error {
	dead, err := lockSide(ctx, q.clock, block, "consumer")
	if dead {
		release.Store64(q.reading, 0) // it may have died inside Read's fn
		q.cdead.Add(1)
	}
	return err
}

// lockSide takes one side's lock l (block) or tries to: dead reports that
// it took it over from a dead holder (the caller repairs). errBusy means
// the lock is busy in try mode; any other error, that it is not held.
func lockSide(ctx context.Context, l *robust.Lock, block bool, side string) (dead bool, err error) {
	if l.TryLockFree() {
		return false, nil
	}
	if block {
		err = l.Lock(ctx)
	} else if ok, rerr := l.RecoverDead(); ok || rerr != nil {
		err = rerr
	} else {
		return false, errBusy
	}
	if errors.Is(err, sentinel.ErrOwnerDead) {
		return true, nil
	}
	return false, lockErr(side, err)
}

// lockErr is the error of a call that did not get the side's lock: a
// closed handle's errClosed, ctx's error as it is, an impossible lock word
// as ErrCorrupt.
func lockErr(side string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrClosed):
		return errClosed
	case errors.Is(err, ErrCorrupt):
		return fmt.Errorf("ipcqueue: %s lock: %w", side, err)
	}
	return err
}

// repairLocked runs repairProducer with the lock just taken over, and
// releases the lock if the queue is corrupt.
func (q *Queue) repairLocked() error {
	if err := q.repairProducer(); err != nil {
		q.plock.Unlock()
		return err
	}
	return nil
}

// recoverProducer takes the producer lock over if its holder is dead,
// repairs what it left and releases the lock; it reports whether it did
// (the Watch of a waiter, and Stats), and the repair's error (ErrCorrupt:
// then it only releases the lock).
func (q *Queue) recoverProducer() (bool, error) {
	ok, _ := q.plock.RecoverDead()
	if !ok {
		return false, nil
	}
	if err := q.repairLocked(); err != nil {
		return true, err
	}
	q.plock.Unlock()
	return true, nil
}
