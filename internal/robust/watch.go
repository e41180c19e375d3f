package robust

import (
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/liveness"
)

// Watching holders
//
// A sleeper must notice its holder's death promptly, without waking while
// the holder lives. The obvious way, a futex sleep with a CheckPeriod
// timeout and a liveness check at each, costs an idle Go process far more
// than the checks themselves: each timed wake-up makes the runtime run its
// scheduler, wake and park threads and restart sysmon's back-off, some
// seven system calls and 200-300 us of CPU on a VM. Measured here
// (TestIdleCPU, 5 s blocked in Lock on a holder in another process): 16.5
// ms of CPU with a 100 ms timeout; a Go timer instead of the futex timeout
// costs the same (11 ms per 5 s for a bare 100 ms ticker). Issue 14's
// target is 5 ms.
//
// So a sleeper asks the kernel to tell it: liveness.Notify blocks a
// goroutine of the process in F_OFD_SETLKW on the holder's registry byte,
// which returns the moment the holder dies, and then wakes the sleepers
// that follow that holder. The sleeper registers (follow) for the holder it
// found before it sleeps; the notification sets fired and wakes the
// sleepers of the futex word (FUTEX_WAKE, all: the word is shared and the
// notifier cannot pick its own sleeper; the others see a spurious
// wake-up), again and again until the sleeper has left its sleep (the same
// back-off as cancellation, for a wake that lands before futex_wait). The
// sleeper, awake, sees fired and takes over (or runs its caller's repair)
// on its own goroutine. The notifier never takes anything itself.
//
// Notification alone misses two cases: the lock passes, while the sleeper
// sleeps, to another process that then dies (Unlock wakes one sleeper, not
// this one, so this one still follows the previous holder: a holder that
// will keep the lock for long calls Lock.WakeAllWaiters to prevent it);
// and holders whose registry cannot be watched (Unknown). So a sleeper also
// wakes on a slow timer: after CheckPeriod, then twice as long each time,
// up to MaxCheckPeriod, re-checking and re-following whoever holds the lock
// then. An idle waiter thus wakes five times in its first 5 s and every 2 s
// after that (measured the same way: 1.5-5 ms of CPU per 5 s in the steady
// state, depending on what else the machine runs; an idle Go process alone
// costs about 1 ms here), and a holder that took the lock while it slept
// and then died is found within MaxCheckPeriod. TestHandOffThenDeath shows
// both ways.

// MaxCheckPeriod bounds the back-off of a sleeper's periodic checks.
const MaxCheckPeriod = 2 * time.Second

// watched is one sleeper's registrations for its holders' deaths. Its
// methods other than notify are called only by the sleeping goroutine.
type watched struct {
	fx     *atomic.Uint32
	fired  atomic.Bool  // a followed holder died
	asleep atomic.Int32 // 1 while the sleeper may be in (or entering) futex_wait
	stops  map[liveness.Token]func()
	notify func()

	period time.Duration // current period of the slow checks
	next   time.Time     // next slow check
	notice bool          // the last due check followed a death notice
	retry  time.Time     // a quick re-check after a notice (see late), if not zero
	soon   time.Duration // the interval of the last quick re-check
}

func newWatched(fx *atomic.Uint32) *watched {
	w := &watched{fx: fx, stops: map[liveness.Token]func(){}, period: CheckPeriod}
	w.notify = func() {
		w.fired.Store(true)
		wakeWhile(func() bool { return w.asleep.Load() == 1 }, addr(w.fx))
	}
	return w
}

// follow makes w follow exactly the holders toks.
func (w *watched) follow(toks ...liveness.Token) {
	for t, stop := range w.stops {
		keep := false
		for _, u := range toks {
			keep = keep || u == t
		}
		if !keep {
			stop()
			delete(w.stops, t)
		}
	}
	for _, t := range toks {
		if _, ok := w.stops[t]; !ok {
			w.stops[t] = liveness.Notify(t, w.notify)
		}
	}
}

// stop ends every registration.
func (w *watched) stop() { w.follow() }

// due reports whether the holders must be checked now: a followed holder
// died, or the slow check is due (which backs the period off). It starts
// the slow checks' clock on its first call.
func (w *watched) due(now time.Time) bool {
	fired := w.fired.Swap(false)
	w.notice = fired
	switch {
	case w.next.IsZero():
		w.next = now.Add(w.period)
		return true
	case !now.Before(w.next):
		w.period = min(2*w.period, MaxCheckPeriod)
		w.next = now.Add(w.period)
		return true
	case !w.retry.IsZero() && !now.Before(w.retry):
		w.retry, w.notice = time.Time{}, true
		return true
	}
	return fired
}

// late is called when the check that due asked for found nothing to do.
// After a death notice that can be early: a dying process drops its
// registry lock, which the notice follows, and what the sleeper waits for
// (a FileMutex's flock, released with the process's other files) one at a
// time, and a preempted exit can hold the second for milliseconds. The
// notice fires once, so the sleeper looks again soon: 1 ms later, then at
// twice the interval each time, until the interval reaches CheckPeriod and
// the slow checks carry on.
func (w *watched) late(now time.Time) {
	if !w.notice {
		w.soon = 0
		return
	}
	if w.soon = max(2*w.soon, time.Millisecond); w.soon >= CheckPeriod {
		w.soon = 0
		return
	}
	w.retry = now.Add(w.soon)
}

// nextCheck is when the sleeper must wake to check its holders, if no
// notice wakes it first.
func (w *watched) nextCheck() time.Time {
	if !w.retry.IsZero() && w.retry.Before(w.next) {
		return w.retry
	}
	return w.next
}
