package ipcqueue

import (
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/release"
)

// Handle lifetime
//
// Close releases a handle's mapping (shm retires it: a later access
// faults) while other goroutines may be inside calls on the same handle.
// A goroutine that faulted inside Put or Get would crash the process, and
// one that faulted holding the producer or consumer lock would leave that
// lock held by a live process, stopping every other process's producers or
// consumers for good. So Close unmaps only once no call of the handle can
// touch the mapping. The fast paths pay for this without a locked
// instruction: a Put or Get makes two already, and each one more costs
// throughput dearly (BENCHMARKS.md, "Not met, and why"); an atomic count of
// calls in progress would add two to every call.
//
// A call holds the handle in one of two ways (type call):
//
//   - Pinned: the fast paths (a Put that finds room, a Get that finds a
//     message, each copying at most pinnedCopy bytes, and the calls that
//     only load a word). The goroutine pins itself to its P with
//     runtime.procPin, as sync.Pool does: until it unpins it is neither
//     preempted nor moved, so it alone writes its P's word in pinSlots, with
//     plain stores: odd while it may touch the mapping, even (a release
//     store, after all its accesses) once it no longer does. A pinned
//     goroutine makes no system call, never blocks and never yields; before
//     any of that it becomes counted (call.count).
//   - Counted: everything else. q.calls is incremented (an atomic add, a
//     full fence) before the handle's open flag is checked, and decremented
//     when the call no longer touches the mapping.
//
// Close clears q.open and wakes the handle's sleepers (robust.Closer: on
// the locks and in waits; each returns errClosed, and a spinner sees open
// cleared), then calls membarrier(2) (MEMBARRIER_CMD_PRIVATE_EXPEDITED),
// which runs a full fence on every running thread of the process: a
// pinned goroutine either made its word odd before that fence, and Close
// sees the odd word, or loads open after it and leaves without touching
// the mapping. That asymmetric fence is what lets the pinned entry be a
// plain store (on amd64 a store may otherwise pass the later load of open,
// and Close would miss the call). Close then waits for every P whose word
// it saw odd to move on, then for q.calls to reach zero. Only then does it
// unmap. Where membarrier is missing (not Linux on amd64 or arm64, or a
// kernel or sandbox without it), the pinned entry store is sync/atomic's,
// itself a full fence.

// pinnedCopy is the most a pinned call copies: a longer message is copied
// by a counted call, so that a pinned stretch (which holds up the garbage
// collector's stop-the-world) stays short.
const pinnedCopy = 16 << 10

// pinSlot is one P's word (see "Handle lifetime"), 128 bytes from the next:
// two cache lines, which the adjacent-line prefetcher fetches in pairs.
type pinSlot struct {
	seq atomic.Uint64
	_   [120]byte
}

// pinSlots has a word per P. A call on a P beyond it (GOMAXPROCS raised
// above the CPU count after start) is counted.
var pinSlots = make([]pinSlot, max(runtime.GOMAXPROCS(0), runtime.NumCPU()))

// call is one call's hold on handle q: pinned (pin != nil) or counted.
type call struct {
	q   *Queue
	pin *pinSlot
}

// enter starts a call on q: pinned if it can be, counted otherwise. It
// returns errClosed, holding nothing, on a closed (or zero) handle.
func (q *Queue) enter() (call, error) {
	p := procPin()
	if p < len(pinSlots) {
		s := &pinSlots[p]
		q.announce(s)
		if q.open.Load() {
			return call{q: q, pin: s}, nil
		}
	}
	return q.enterSlow(p)
}

// announce makes the pinned caller's word s odd: a plain store, or a full
// fence where Close has no membarrier.
func (q *Queue) announce(s *pinSlot) {
	if v := s.seq.Load() + 1; !q.fenced {
		release.Store64(&s.seq, v)
	} else {
		s.seq.Store(v)
	}
}

// enterSlow is enter when the pinned path does not apply: the caller is
// pinned to P p (and announced, if p has a word), and q is closed or p has
// no word.
func (q *Queue) enterSlow(p int) (call, error) {
	if p < len(pinSlots) {
		(&call{q: q, pin: &pinSlots[p]}).leave() // announced: q is closed
		return call{}, errClosed
	}
	procUnpin()
	return q.enterCounted()
}

// enterCounted starts a counted call on q.
func (q *Queue) enterCounted() (call, error) {
	q.calls.Add(1)
	if !q.open.Load() {
		q.calls.Add(-1)
		return call{}, errClosed
	}
	return call{q: q}, nil
}

// count makes c counted, if it is pinned: the caller is about to make a
// system call, block, yield or copy much.
func (c *call) count() {
	if c.pin != nil {
		c.q.calls.Add(1)
		c.leave()
		c.pin = nil
	}
}

// leave ends c: after it the caller must not touch q's mapping. Pinned, it
// makes the P's word even with a release store, after every access.
func (c *call) leave() {
	if s := c.pin; s != nil {
		release.Store64(&s.seq, s.seq.Load()+1)
		procUnpin()
		return
	}
	c.q.calls.Add(-1)
}

// closeHandle is Close's work, done once: see "Handle lifetime".
func (q *Queue) closeHandle() error {
	if q.seg == nil {
		return nil // the zero Queue
	}
	q.open.Store(false)
	q.closer.Close(q.dataFx, q.spaceFx, q.plock.Sleepers(), q.clock.Sleepers())
	if !q.fenced {
		if err := membarrier(); err != nil {
			// A pinned call may still be about to touch the mapping: keep it.
			return err
		}
	}
	q.drain()
	return q.seg.Close()
}

// drain waits until no call on q can touch the mapping.
func (q *Queue) drain() {
	type busy struct {
		s   *pinSlot
		seq uint64
	}
	var pinned []busy
	for i := range pinSlots {
		if v := pinSlots[i].seq.Load(); v&1 != 0 {
			pinned = append(pinned, busy{&pinSlots[i], v})
		}
	}
	for pause := time.Microsecond; ; pause = min(2*pause, time.Millisecond) {
		// First the pinned calls, then the count: a pinned call that
		// became counted added to the count before it unpinned.
		pinned = slices.DeleteFunc(pinned, func(b busy) bool { return b.s.seq.Load() != b.seq })
		n := q.calls.Load()
		if len(pinned) == 0 && n == 0 {
			return
		}
		time.Sleep(pause)
	}
}
