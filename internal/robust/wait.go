package robust

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/internal/liveness"
)

// Waiting
//
// Every cross-process wait in ipckit is the same three steps: spin a while
// on the state (see Spinner), then announce itself on a sleepers word and
// sleep on it with futex (shared, never FUTEX_PRIVATE_FLAG), and re-check
// the state on every return, which may be spurious.
//
// The sleepers word. Bit 0 says "someone may sleep". A waiter loads the
// word f; if bit 0 is clear it sets it with a CAS (f|1); then it re-checks
// the state; then it sleeps while the word still holds f|1. A waker first
// changes the state, then makes a full fence (an atomic read-modify-write:
// the lock's CAS, a counter's Add), then loads the word, and only if bit 0
// is set bumps it (CAS f -> f+1: bit 0 clear, value new) and calls
// FUTEX_WAKE. Both sides are sequentially consistent atomics (Go's
// sync/atomic, LOCK-prefixed on amd64, LDAR/STLR and LSE or LL/SC pairs on
// arm64), so of "waiter: set bit; load state" and "waker: store state; load
// bit" at least one sees the other's store: either the waiter sees the new
// state and does not sleep, or the waker sees the bit and wakes it (and if
// the bump lands before the sleeper enters futex_wait, the kernel sees the
// word changed and returns at once). Nobody makes a system call while
// nobody sleeps. This is the Dekker argument, and it is why the waker's
// fence must come from a read-modify-write (or a sync/atomic Store, which
// is sequentially consistent): a release store alone (internal/release,
// a plain MOV on amd64) may be passed by the later load of the word.
//
// Time. A sleep is bounded only by what the waiter must do at a given
// time, never by a polling slice:
//
//   - the caller's deadline (ctx.Deadline): the futex timeout is exactly
//     the time left, so a wait returns within the kernel's timer slack and
//     one wake-up of the deadline (TestDeadlineLateness measures it);
//   - a holder's death: a sleeper that waits for a holder (a lock held by
//     another process, or a condition whose caller gave a Watch) follows
//     it: the kernel wakes it when the holder dies (watch.go, "Watching
//     holders"), and a slow back-off timer (CheckPeriod doubling up to
//     MaxCheckPeriod) re-checks in case the holder changed or cannot be
//     followed. A waiter with no holder to watch (a lock held by another
//     goroutine of this process, a condition with no Watch: an empty
//     queue, an Event) sleeps with no timeout at all and costs nothing;
//   - cancellation: context.AfterFunc wakes the sleeper. A cancel that lands
//     between the waiter's last ctx check and its entry into futex_wait
//     would be lost, so the AfterFunc wakes again (wakeWhile: at once for
//     100 us, then every millisecond) until the sleeper has left its sleep.
//     This replaces futex.WaitContext's 20 ms slices, which made a
//     cancelled wait up to 20 ms late. (A deadline needs none of it: the
//     sleep's own timeout is the deadline.);
//   - Close of the handle (Closer): the same, for every sleeper of the
//     handle.
//
// Cancellation and Close wake every sleeper on the word (FUTEX_WAKE cannot
// pick one); the others see a spurious wake-up and sleep again.
//
// Before giving up on a deadline or a cancellation, a waiter looks at the
// holder once more (Lock.Lock, and Watch for Wait): a holder that died is
// taken over and reported (ErrOwnerDead), never a timeout, whatever the
// deadline, so a 10 ms deadline on a lock whose holder was SIGKILLed returns
// ErrOwnerDead with the lock held.

// CheckPeriod is the first period of a sleeper's slow liveness checks,
// which then back off to MaxCheckPeriod (see "Watching holders"); the
// death of the holder a sleeper follows is notified at once.
const CheckPeriod = 100 * time.Millisecond

// unwoken counts this process's sleeps that ran into their slow-check
// timer (not a quick look after a notice: see watched.late) with the
// sleepers word unchanged and no death notice: the holder
// they follow kept the lock (or the waited-for state) that long, or their
// wake-up was lost (a Put's or an Unlock's, and also a cancellation's or a
// Close's: a sleep they end never reaches its timer).
// Between processes exchanging short critical sections each is a lost
// wake-up, which is how the TestNoLostWakeups tests watch the protocol; a
// sleeper with no slow check (its holder is its own process, or none) would
// sleep on, and the tests' deadlines catch that. Sleeps woken with the word
// unchanged are not counted: a wake-up delayed between its bump and its
// system call (a preempted waker) lands on the next sleep, harmlessly, and
// a loaded machine makes some.
var unwoken atomic.Uint64

// Unwoken returns how many sleeps of this process ended unwoken; see
// "Waiting".
func Unwoken() uint64 { return unwoken.Load() }

// Closer lets a handle's Close end this process's waits on the handle's
// object promptly: after [Closer.Close], every wait that was given the
// Closer returns [os.ErrClosed]. The zero Closer is open. A Closer is
// process-local (it lives in the Go heap, never in shared memory); it is
// safe for concurrent use and must not be copied.
type Closer struct {
	_        noCopy
	closed   atomic.Bool
	sleeping atomic.Int32 // sleeps in progress (between announcing and leaving)
}

// Closed reports whether Close was called.
func (c *Closer) Closed() bool { return c != nil && c.closed.Load() }

// Close marks c closed, then wakes every futex word in words until none of
// c's sleepers is left asleep. It is safe to call twice.
//
// A sleeper adds itself to sleeping before its last look at closed, and
// Close sets closed before it reads sleeping: with sequentially consistent
// atomics, either the sleeper sees closed and does not sleep, or Close sees
// it and wakes it (again and again, until it is gone).
func (c *Closer) Close(words ...*atomic.Uint32) {
	c.closed.Store(true)
	addrs := make([]*uint32, len(words))
	for i, w := range words {
		addrs[i] = addr(w)
	}
	wakeWhile(func() bool { return c.sleeping.Load() > 0 }, addrs...)
}

// WaitOptions configures [Wait] and [WaitValue]. A nil *WaitOptions means
// none of them.
type WaitOptions struct {
	// Closer, if set, ends the wait with os.ErrClosed when it is closed.
	Closer *Closer
	// Waits, if set, counts the wait's futex sleeps (a shared statistic).
	Waits *atomic.Uint64
	// Watch, if set, looks for a dead holder the waiter depends on (a
	// producer that died holding the producer lock, permits of a dead
	// process) and repairs what it left; it reports whether it changed
	// anything, and then Wait returns nil so that the caller looks again.
	// Wait calls it on the waiter's goroutine when one of the Holders
	// dies, on a slow timer (CheckPeriod, backing off to MaxCheckPeriod;
	// every CheckPeriod without Holders), and once more before it gives up
	// on ctx. Without Watch, Wait sleeps with no timeout but ctx's
	// deadline.
	Watch func() bool
	// Holders, if set with Watch, returns the tokens of the holders Watch
	// looks after (the producer lock's holder, the processes holding
	// permits), so that the kernel can wake the waiter when one dies (see
	// watch.go). Wait calls it before each sleep; it must only read.
	Holders func() []liveness.Token
}

// Wait blocks until ready reports true, announcing itself on the sleepers
// word fx (see "Waiting"); whoever makes ready true must then call [Wake]
// (after a full fence). It returns nil once ready is true or Watch acted;
// ctx.Err() (context.DeadlineExceeded as soon as the deadline passes) when
// ctx is done first; os.ErrClosed once the Closer is closed. ready is
// called after each announcement and each wake-up; it must not block.
func Wait(ctx context.Context, fx *atomic.Uint32, ready func() bool, o *WaitOptions) error {
	return wait(ctx, fx, ready, 0, true, o)
}

// WaitValue blocks while word holds val: the wait for a word that every
// waker changes and then wakes unconditionally with FUTEX_WAKE (a barrier's
// generation, an event's flag and count, a semaphore's sequence number),
// where Wait's sleepers bit is not needed. Its results and options are
// Wait's; it returns nil once the word differs from val.
func WaitValue(ctx context.Context, word *atomic.Uint32, val uint32, o *WaitOptions) error {
	return wait(ctx, word, func() bool { return word.Load() != val }, val, false, o)
}

// wait is Wait (announce: on a sleepers word) and WaitValue (on a value).
func wait(ctx context.Context, fx *atomic.Uint32, ready func() bool, val uint32, announced bool, o *WaitOptions) error {
	var c *Closer
	var waits *atomic.Uint64
	var watchFn func() bool
	var holders func() []liveness.Token
	if o != nil {
		c, waits, watchFn, holders = o.Closer, o.Waits, o.Watch, o.Holders
	}
	var wt *watched
	if watchFn != nil {
		wt = newWatched(fx)
		defer wt.stop()
	}
	deadline, hasDeadline := ctx.Deadline()
	for {
		if ready() {
			return nil
		}
		f := val
		if announced {
			var ok bool
			if f, ok = announce(fx); !ok {
				continue
			}
			if ready() {
				return nil
			}
		}
		if c.Closed() {
			return os.ErrClosed
		}
		now := time.Now()
		checked := false
		if wt != nil {
			if holders == nil {
				wt.period = CheckPeriod // nothing to follow: no back-off
			}
			if first := wt.next.IsZero(); wt.due(now) && !first {
				checked = true
				if watchFn() {
					return nil
				}
				wt.late(now)
				continue
			}
			if holders != nil {
				wt.follow(holders()...)
			}
		}
		if err := expired(ctx, hasDeadline, deadline, now); err != nil {
			if watchFn != nil && !checked && watchFn() {
				return nil
			}
			return err
		}
		var until time.Time
		if wt != nil {
			until = wt.nextCheck()
		}
		if hasDeadline && (until.IsZero() || deadline.Before(until)) {
			until = deadline
		}
		if err := sleep(ctx, c, fx, f, until, hasDeadline && until.Equal(deadline), waits, wt); err != nil {
			return err
		}
	}
}

// Wake wakes every sleeper on fx, if any announced itself. Call it after
// making the waited-for state true and then a full fence (see "Waiting").
func Wake(fx *atomic.Uint32) {
	if f := fx.Load(); f&1 != 0 && fx.CompareAndSwap(f, f+1) {
		futex.Wake(addr(fx), 0)
	}
}

// WakeAll bumps fx and wakes every sleeper, announced or not (shutdown).
func WakeAll(fx *atomic.Uint32) {
	fx.Add(2)
	futex.Wake(addr(fx), 0)
}

// wakeOne wakes one sleeper on fx, if any announced itself. The woken one
// re-arms bit 0 (see Lock) so that the others are not forgotten.
func wakeOne(fx *atomic.Uint32) {
	if f := fx.Load(); f&1 != 0 && fx.CompareAndSwap(f, f+1) {
		futex.Wake(addr(fx), 1)
	}
}

// announce sets bit 0 of fx and returns the value to sleep on; ok is false
// if the word changed meanwhile (look again).
func announce(fx *atomic.Uint32) (f uint32, ok bool) {
	f = fx.Load()
	if f&1 != 0 {
		return f, true
	}
	return f | 1, fx.CompareAndSwap(f, f|1)
}

// expired returns ctx's error, or context.DeadlineExceeded once now is
// past the deadline (a context's own timer may fire a little later than
// the futex timeout that woke us, and the deadline is what is promised).
func expired(ctx context.Context, hasDeadline bool, deadline, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if hasDeadline && !now.Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// sleep blocks while fx holds val: until a wake-up (anybody's, the
// notifier's for wt included), until until (the zero time: no limit; the
// caller's deadline if atDeadline, else its next slow check), until ctx is
// done, or until c is closed. It returns an error only when futex fails
// for another reason than those; the caller re-checks everything.
func sleep(ctx context.Context, c *Closer, fx *atomic.Uint32, val uint32, until time.Time, atDeadline bool, waits *atomic.Uint64, wt *watched) error {
	timeout := futex.Forever
	if !until.IsZero() {
		if timeout = time.Until(until); timeout <= 0 {
			return nil
		}
	}
	if c != nil {
		c.sleeping.Add(1)
		defer c.sleeping.Add(-1)
		if c.closed.Load() {
			return nil
		}
	}
	if waits != nil {
		waits.Add(1)
	}
	a := addr(fx)
	if wt != nil {
		wt.asleep.Store(1)
		defer wt.asleep.Store(0)
		// If the notifier saw asleep 0, it set fired before, and we see it.
		if wt.fired.Load() {
			return nil
		}
	}
	var err error
	if ctx.Done() == nil {
		err = futex.Wait(a, val, timeout)
	} else {
		// state: 0 not yet asleep, 1 asleep (or about to be), 2 left.
		var state atomic.Int32
		stop := context.AfterFunc(ctx, func() {
			if !until.IsZero() && !time.Now().Before(until) {
				return // our own timeout ends the sleep at this very time
			}
			wakeWhile(func() bool { return state.Load() == 1 }, a)
		})
		state.Store(1)
		// If the AfterFunc saw state 0, the cancel happened before the
		// Store above, and so before this check, which then sees it.
		if ctx.Err() == nil {
			err = futex.Wait(a, val, timeout)
		}
		state.Store(2)
		stop()
	}
	timedOut := errors.Is(err, futex.ErrTimeout)
	if err != nil && !timedOut {
		return err
	}
	if timedOut && !atDeadline && wt != nil && until.Equal(wt.next) && fx.Load() == val && !wt.fired.Load() {
		unwoken.Add(1)
	}
	return nil
}

// wakeWhile wakes every sleeper on addrs as long as asleep reports that the one
// it is meant for may still be asleep: a wake that lands after the sleeper
// made its last check but before it entered futex_wait is lost, and that
// window is a few instructions long unless the sleeper is preempted in it.
// So it retries at once, yielding, for 100 us, then every 1 ms. (A Go
// time.Sleep shorter than a millisecond sleeps about a millisecond: the
// runtime's timers wait in epoll with millisecond resolution.)
func wakeWhile(asleep func() bool, addrs ...*uint32) {
	start := time.Now()
	for asleep() {
		for _, a := range addrs {
			futex.Wake(a, 0)
		}
		if time.Since(start) < 100*time.Microsecond {
			runtime.Gosched()
			continue
		}
		time.Sleep(time.Millisecond)
	}
}

// addr is the plain address of an atomic word, for futex calls.
func addr(w *atomic.Uint32) *uint32 { return (*uint32)(unsafe.Pointer(w)) }

// noCopy makes go vet's copylocks check report copies of the types holding it.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
