package robust

import (
	"runtime"
	"sync/atomic"
	"time"
	_ "unsafe" // for go:linkname
)

// Adaptive spinning
//
// Before it sleeps, a waiter polls the state for a while: a futex wake-up
// between two vCPUs of a VM costs tens of microseconds, more than a short
// critical section or a hand-off in another process. How long is adapted
// per handle (a Spinner lives in the process, never in shared memory), the
// way ipcqueue's queue waits learnt to (its measurements are in
// ipcqueue/wait.go): the budget starts at the handle's maximum; a spin that
// succeeds doubles it (up to the maximum); a spin that runs out halves it
// (down to minSpin), and then the caller sleeps. When such a sleep ends
// with the state ready, the caller reports how long the whole wait took
// ([Spinner.Slept]); if that was at most the maximum, the budget becomes at
// least twice that: a spin that long would have caught it. So a mostly
// idle handle (waits longer than the maximum) decays to minSpin and burns
// little CPU, while a handle whose waits are steadily short recovers its
// budget after one futex sleep, whatever an idle period did to it.
//
// Between polls a spinner executes one spin-wait hint (PAUSE on amd64, YIELD
// on arm64: runtime.procyield), which leaves the polled cache line to its
// writer, and every 256 polls it yields its P (runtime.Gosched), so that a
// holder that is a goroutine of this process can run even at GOMAXPROCS=1.
// The first 64 polls read no clock: most hand-offs on a busy object take
// well under a microsecond.

// DefaultSpin is the spin budget of a handle whose spin option is 0.
const DefaultSpin = 50 * time.Microsecond

const minSpin = 2 * time.Microsecond

// Spinner is one handle's adaptive spin budget. Its zero value never
// spins; [Spinner.SetMax] turns it on. It is safe for concurrent use
// (both fields are atomic: a handle is used by many goroutines at once).
type Spinner struct {
	maxNs  atomic.Int64 // longest budget in ns; 0: never spin
	budget atomic.Int64 // current budget in ns
}

// SetMax sets the longest spin and resets the budget to it; max <= 0
// turns spinning off.
func (s *Spinner) SetMax(max time.Duration) {
	max = maxOrOff(max)
	s.maxNs.Store(int64(max))
	s.budget.Store(int64(max))
}

// maxOrOff maps a spin option (0: default, < 0: off) to a budget.
func maxOrOff(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return DefaultSpin
	case d < 0:
		return 0
	}
	return d
}

// Budget returns the current budget.
func (s *Spinner) Budget() time.Duration { return time.Duration(s.budget.Load()) }

// Spin calls ready until it returns true or the budget runs out, and
// reports whether it did. When it did not, start is when the spin began
// (zero if spinning is off): pass it to [Spinner.Slept] once the wait is
// over.
func (s *Spinner) Spin(ready func() bool) (ok bool, start time.Time) {
	b := time.Duration(s.budget.Load())
	if b <= 0 {
		return false, time.Time{}
	}
	smax := time.Duration(s.maxNs.Load())
	for range 64 {
		if ready() {
			return true, time.Time{}
		}
		procyield(1)
	}
	start = time.Now()
	for i := 1; ; i++ {
		if ready() {
			if b < smax {
				s.budget.Store(int64(min(2*b, smax)))
			}
			return true, time.Time{}
		}
		procyield(1)
		if i&15 == 0 {
			if time.Since(start) > b {
				s.budget.Store(int64(max(b/2, minSpin)))
				return false, start
			}
			if i&255 == 0 {
				runtime.Gosched()
			}
		}
	}
}

// Slept reports a wait whose spin (begun at start) failed and whose sleep
// then ended with the state ready: if the whole wait took at most the
// maximum, the budget rises to twice that (it never falls here).
func (s *Spinner) Slept(start time.Time) {
	smax := time.Duration(s.maxNs.Load())
	if start.IsZero() || smax <= 0 {
		return
	}
	d := time.Since(start)
	if d > smax {
		return
	}
	want := int64(min(max(2*d, minSpin), smax))
	if b := s.budget.Load(); b < want {
		s.budget.CompareAndSwap(b, want)
	}
}

// procyield executes the CPU's spin-wait hint cycles times (the runtime's
// own spin primitive, which it exports for linkname).
//
//go:linkname procyield runtime.procyield
func procyield(cycles uint32)
