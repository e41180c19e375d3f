package ipcqueue

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/futex"
)

// Waiting
//
// A consumer that finds the queue empty, or a producer that finds it full,
// first spins, re-reading the one word that will change (the header word
// at head, or head itself), for up to its handle's spin budget. If that
// fails it sleeps on a futex word: dataFx for consumers (bumped by a
// producer after a commit), spaceFx for producers (bumped by a consumer
// after moving head). Bit 0 of each says "someone sleeps": a sleeper sets
// it with a CAS, then re-checks the queue, then sleeps while the word is
// unchanged; the other side, after its store (commit or head), loads the
// word and only if the bit is set bumps it (clearing the bit) and wakes
// every sleeper. The sleeper's CAS and the waker's atomic add after its
// store are full fences, so either the sleeper's re-check sees the store
// or the waker sees the bit: no lost wake-up, and no syscall at all while
// nobody sleeps. A sleeper that dies costs at most one needless wake.
// Sleeps are bounded (waitSleep) so that sleepers also notice dead lock
// holders; Shutdown bumps both words and wakes everyone; Close wakes the
// handle's own sleepers (guard.go), which re-check the handle when they
// wake; a cancelled context wakes its own sleeper (futex.WaitContext).
//
// The spin budget is adaptive, per handle and per side, between minSpin and
// the handle's bound (max, set by Queue.SetSpin). It starts at max and
// doubles (up to max) each time spinning succeeded. A spin that runs out
// halves it (down to minSpin), and then the caller sleeps; when the sleep
// ends with the queue ready, the caller reports how long the whole wait took
// (spin included), and if that was at most max, the budget becomes at least
// twice that (up to max): a spin that long would have caught it. So a queue
// that is mostly idle (waits longer than max) decays to minSpin and burns
// little CPU, while a handle whose waits are steadily shorter than max
// recovers its budget after a single futex sleep, whatever an idle period
// did to it. (Halving alone, with doubling only after a successful spin,
// never recovers: after one idle period the budget sits at minSpin, and
// every wait a little longer than that misses it and pays a futex wake.) The
// measured wait includes the futex wake-up latency, which errs on the side
// of spinning a little longer.
//
// DefaultSpin is sized from BenchmarkPingPong's sweep of fixed budgets: a
// spin hand-off costs a small fraction of a futex sleep and wake, a budget
// of a few microseconds lets some hand-offs miss it and pay the futex at
// the p99, and from some tens of microseconds up the p99 stays at the spin
// hand-off's. DefaultSpin sits above that knee; a spinner burns it in full
// only when the other side is genuinely slow, and then halves it. Between
// polls a spinner executes one PAUSE: more would add their latency to
// every hand-off. The figures: BENCHMARKS.md, "ipcqueue: figures moved
// from code comments".

// DefaultSpin is the spin budget of a new handle, and of one given 0 by
// [Queue.SetSpin].
const DefaultSpin = 50 * time.Microsecond

const (
	minSpin   = 2 * time.Microsecond
	waitSleep = 100 * time.Millisecond
	spinPause = 1 // PAUSE instructions between two polls (BenchmarkPause times one)
)

// spinner is one side's adaptive spin budget.
//
// Both fields are atomic: a handle is used by many goroutines at once, and
// SetSpin may change them while others spin.
type spinner struct {
	maxNs  atomic.Int64 // longest budget in ns; 0: never spin
	budget atomic.Int64 // current budget in ns
}

func (s *spinner) init(max time.Duration) {
	s.maxNs.Store(int64(max))
	s.budget.Store(int64(max))
}

// spin calls ready until it returns true or the budget runs out, and
// reports whether it did. When it did not, start is when the spin began
// (zero if spinning is off): pass it to slept once the wait is over.
func (s *spinner) spin(ready func() bool) (ok bool, start time.Time) {
	b := time.Duration(s.budget.Load())
	if b <= 0 {
		return false, time.Time{}
	}
	smax := time.Duration(s.maxNs.Load())
	// Poll a while before reading the clock: most hand-offs on a busy
	// queue take well under a microsecond.
	for range 64 {
		if ready() {
			return true, time.Time{}
		}
		procyield(spinPause)
	}
	start = time.Now()
	for i := 1; ; i++ {
		if ready() {
			if b < smax {
				s.budget.Store(int64(min(2*b, smax)))
			}
			return true, time.Time{}
		}
		procyield(spinPause)
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

// slept reports a wait whose spin (begun at start, see spin) failed and
// whose sleep then ended with the queue ready: if the whole wait took at
// most max, a spin of twice that would have caught it, so the budget
// rises to that (never falls here).
func (s *spinner) slept(start time.Time) {
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

// sleep waits on fx until ready, ctx is done, or waitSleep passes. It
// returns ctx.Err() when cancelled, nil otherwise (the caller re-checks).
func sleep(ctx context.Context, fx *atomic.Uint32, waits *atomic.Uint64, ready func() bool) error {
	for {
		f := fx.Load()
		if f&1 == 0 && !fx.CompareAndSwap(f, f|1) {
			continue
		}
		if ready() {
			return nil
		}
		waits.Add(1)
		err := futex.WaitContext(ctx, rawU32(fx), f|1, waitSleep)
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil && !errors.Is(err, futex.ErrTimeout) {
			return err
		}
		countUnwoken(fx, f|1)
		return nil
	}
}

// unwoken counts this process's sleeps, on a queue's or a lock's futex,
// that ended with nobody having bumped the word: they ran out their time
// (or a cancellable wait's slice), or Close woke them (it wakes without a
// bump). Between one producer and one consumer exchanging messages, each is
// a lost wake-up (with more consumers, one may also wait out lockSleep on
// the consumer lock while another holds it waiting for data), which is how
// the tests watch the wake-up protocols. It is a process-wide counter, not
// a field of a Queue, because it counts for the process (a test's helper
// process reports its own) and is kept inside the robust lock's and the
// sleeper's code, which the shared robust core will replace.
var unwoken atomic.Uint64

// countUnwoken is called after a sleep on fx announced with value f.
func countUnwoken(fx *atomic.Uint32, f uint32) {
	if fx.Load() == f {
		unwoken.Add(1)
	}
}

// wake wakes fx's sleepers, if it has any.
func wake(fx *atomic.Uint32) {
	if f := fx.Load(); f&1 != 0 && fx.CompareAndSwap(f, f+1) {
		futex.Wake(rawU32(fx), 0)
	}
}

// wakeAll bumps fx and wakes its sleepers whatever bit 0 says (Close).
func wakeAll(fx *atomic.Uint32) {
	fx.Add(2)
	futex.Wake(rawU32(fx), 0)
}

// pacer keeps a streaming consumer from chasing the producer record by
// record. A consumer that polls the header a producer is writing pulls that
// cache line away from the producer while it writes it, and the producer
// stalls in its copy into the ring (the profile: BENCHMARKS.md, "ipcqueue:
// figures moved from code comments"). So a consumer whose waits are part of
// a stream first pauses a moment (pacePause PAUSEs: at full speed, long
// enough for several messages to arrive) and then takes what arrived
// meanwhile without waiting. Whether it streams is learnt: after a paused
// wait, at least paceStream messages taken before the next wait mean a
// stream (keep pausing); fewer mean request-response traffic, requests of a
// few messages included, whose latency a pause would only add to (stop, and
// probe again after paceProbe waits, so a stream is found within that many).
// A handle that never spins never paces. Fields are guarded by the consumer
// lock.
type pacer struct {
	took   int  // messages taken since the last wait
	on     bool // pausing
	probed bool // the last wait paused
	waits  int  // waits since pausing stopped
}

const (
	pacePause  = 16  // PAUSEs of a paced wait
	paceProbe  = 256 // waits between two probes of an unpaced consumer
	paceStream = 4   // messages after a paused wait that mean a stream
)

// wait is called when a blocking Get finds the queue empty, before it
// spins; it pauses if the consumer streams (or probes whether it does).
func (p *pacer) wait() {
	if p.probed {
		p.on = p.took >= paceStream
	}
	p.took = 0
	if !p.on {
		p.waits++
		if p.waits < paceProbe {
			p.probed = false
			return
		}
		p.waits = 0
	}
	p.probed = true
	procyield(pacePause)
}
