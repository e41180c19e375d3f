package ipcqueue

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/internal/proc"
	"github.com/ipckit/ipckit/internal/release"
)

// Robust locks
//
// Each side of the queue (producers, consumers) has one lock: a 64-bit word
// holding the holder's identity, pid<<32 | uint32(start time), so that the
// identity is set by the same CAS that takes the lock and a waiter can
// never see a lock without its owner. 0 means free. Unlock is one atomic
// store of 0 (paired with the CAS of the next holder).
//
// A waiter spins briefly, then sleeps on the lock's futex word fx, whose
// bit 0 says "someone sleeps": the waiter sets it (CAS) before re-checking
// the lock, and unlock, seeing it, bumps fx by one (clearing the bit) and
// wakes every sleeper. Sleeps are bounded (lockSleep); a waiter whose
// sleep timed out checks the holder with /proc (pid plus start time, so a
// reused pid is not mistaken for the holder) and, if it is dead, takes the
// lock over with a CAS from the dead holder's word; the caller then repairs
// what the holder left.
//
// The producer lock is held only while one record is written, never while
// waiting for space. A consumer holds the consumer lock while it waits for
// data (see Queue.get), since the other consumers could not take anything
// either; a live waiter is never robbed, a dead one is replaced.

// lockSleep bounds one sleep on a lock, and so how long a dead holder
// blocks the others.
const lockSleep = 50 * time.Millisecond

// selfWord is this process's lock word.
func selfWord() uint64 {
	id := proc.Self()
	return uint64(id.Pid)<<32 | uint64(uint32(id.Start))
}

// alive reports whether the holder named by lock word w is still running.
func alive(w uint64) bool {
	pid := int(w >> 32)
	if pid <= 0 {
		return false
	}
	id, err := proc.Lookup(pid)
	if err == nil {
		return uint32(w) == 0 || uint32(id.Start) == uint32(w)
	}
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	return proc.Alive(proc.ID{Pid: uint32(pid)})
}

type rlock struct {
	word *atomic.Uint64
	fx   *atomic.Uint32
	// race is a Go-heap address standing for the lock under the race
	// detector, which does not see atomics on a mapping as
	// synchronization: without it, goroutines of one process sharing a
	// handle would be reported racing on the handle's fields the lock
	// guards (cachedHead). Unused otherwise.
	race unsafe.Pointer
}

func newRlock(word *atomic.Uint64, fx *atomic.Uint32) rlock {
	return rlock{word: word, fx: fx, race: unsafe.Pointer(new(uint64))}
}

// taken is called once the lock is held.
func (l rlock) taken() bool {
	raceAcquire(l.race)
	return true
}

// tryLock takes the lock if it is free.
func (l rlock) tryLock(me uint64) bool {
	return l.word.Load() == 0 && l.word.CompareAndSwap(0, me) && l.taken()
}

// lock takes the lock, waiting as long as a live holder holds it. It
// returns recovered = true if it took the lock over from a dead holder.
// On ctx's cancellation it returns ctx.Err() without the lock.
func (l rlock) lock(ctx context.Context, me uint64, waits *atomic.Uint64) (recovered bool, err error) {
	for i := 0; i < 200; i++ {
		if l.tryLock(me) {
			return false, nil
		}
		if i > 50 {
			runtime.Gosched()
		}
	}
	for {
		f := l.fx.Load()
		if f&1 == 0 && !l.fx.CompareAndSwap(f, f|1) {
			continue
		}
		if l.tryLock(me) {
			return false, nil
		}
		holder := l.word.Load()
		if holder == 0 {
			continue
		}
		waits.Add(1)
		werr := futex.WaitContext(ctx, rawU32(l.fx), f|1, lockSleep)
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if l.tryLock(me) {
			return false, nil
		}
		countUnwoken(l.fx, f|1)
		if errors.Is(werr, futex.ErrTimeout) || ctx.Done() != nil {
			if w := l.word.Load(); w != 0 && w == holder && !alive(w) && l.word.CompareAndSwap(w, me) && l.taken() {
				return true, nil
			}
		} else if werr != nil && !errors.Is(werr, futex.ErrTimeout) {
			return false, werr
		}
	}
}

// recoverDead takes the lock over if its holder is dead (one /proc look-up).
func (l rlock) recoverDead(me uint64) bool {
	w := l.word.Load()
	return w != 0 && w != me && !alive(w) && l.word.CompareAndSwap(w, me) && l.taken()
}

func (l rlock) unlock() {
	raceRelease(l.race)
	l.word.Store(0)
	l.wakeWaiters()
}

// unlockRel releases the lock with a release store only: the caller must
// issue a full fence and then call wakeWaiters (the hot paths, which have
// a counter to add anyway).
func (l rlock) unlockRel() {
	raceRelease(l.race)
	release.Store64(l.word, 0)
}

// wakeWaiters wakes the lock's sleepers, if any.
func (l rlock) wakeWaiters() {
	if f := l.fx.Load(); f&1 != 0 {
		if l.fx.CompareAndSwap(f, f+1) {
			futex.Wake(rawU32(l.fx), 0)
		}
	}
}
