package ipcqueue

import (
	"context"
	"errors"
	"os"

	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/robust"
)

// Waiting
//
// A consumer that finds the queue empty, or a producer that finds it full,
// first spins, re-reading the one word that will change (the header word
// at head, or freed), for up to its handle's adaptive spin budget
// (robust.Spinner, one per side of a handle, bounded by Queue.SetSpin). If
// that fails it sleeps with robust.Wait on a futex word: dataFx for
// consumers (bumped by a producer after a commit), spaceFx for producers
// (bumped by a consumer after moving head). That is the sleepers-bit
// protocol of robust's "Waiting": a sleeper announces itself on bit 0,
// re-checks the queue, and sleeps while the word is unchanged; the other
// side, after its store (commit or head) and its full fence (the counter
// add), loads the word and only if the bit is set bumps it and wakes
// every sleeper. No lost wake-up, and no system call while nobody sleeps.
// Shutdown bumps both words and wakes everyone; Close wakes the handle's
// own sleepers (robust.Closer); a cancelled context wakes its own sleeper;
// a deadline is the sleep's own timeout, so a wait returns within the
// kernel's timer slack of it (TestDeadlineLateness).
//
// What a sleeper watches. A consumer waits for data holding the consumer
// lock; a producer that dies holding the producer lock (inside Put) leaves
// a record that is either committed but not published or never to be
// committed, and the consumer must repair it (repairProducer) to see the
// next message and to count the loss. So a consumer that goes to sleep
// while another process holds the producer lock follows that holder: the
// kernel wakes it the moment the holder dies (robust, "Watching holders"),
// its Watch (recoverProducer) takes the lock over and repairs, and the
// holder is looked at once more before the wait gives up on its deadline.
// Every other wait (for data with the producer lock free or this
// process's, for space) has no holder to watch and sleeps with no timeout
// but its deadline: a blocked waiter costs nothing (TestIdleGet).
//
// What that leaves (issue 14's trade): a producer in another process that
// takes the producer lock after a consumer fell asleep, commits its
// record, and is killed before its wake-up (a window of a few
// instructions), leaves the message in the queue and the consumer asleep
// until the next Put or Shutdown, from any process, wakes it. A slow
// back-off timer on every data wait would bound that (a robust.Wait with
// a Watch, which costs about 0.4 us and three allocations a wait): it
// made BenchmarkPingPong's blocking round trip 0.5 us slower here (4% of
// 12 us, on a loaded machine; it would be 8% of the 6.6 us ipcbench
// measured on a quiet one), more than the 5% issue 14 allows, and was
// left out.
//
// A watched sleep that runs into its slow check with its word unchanged is
// counted by robust.Unwoken: its producer held the lock that long, or its
// wake-up was lost. Between one producer and one consumer exchanging
// messages there should be none, and a lost wake-up leaves an unwatched
// sleeper asleep until its deadline: TestNoLostWakeups watches both, and
// TestLostWakeupSeen shows that it sees a wake-up skipped on purpose.
//
// DefaultSpin is sized from BenchmarkPingPong's sweep of fixed budgets: a
// spin hand-off costs a small fraction of a futex sleep and wake, a budget
// of a few microseconds lets some hand-offs miss it and pay the futex at
// the p99, and from some tens of microseconds up the p99 stays at the spin
// hand-off's. DefaultSpin sits above that knee; a spinner burns it in full
// only when the other side is genuinely slow, and then halves it. The
// figures: BENCHMARKS.md, "ipcqueue: figures moved from code comments".

// DefaultSpin is the spin budget of a new handle, and of one given 0 by
// [Queue.SetSpin].
const DefaultSpin = robust.DefaultSpin

// waitData blocks, holding the consumer lock, until ready reports true
// (see "Waiting"). It returns nil once ready is true, or once it repaired
// what a dead producer left (the caller looks again); ctx.Err() when ctx
// is done first; errClosed once the handle is closed; ErrCorrupt if the
// repair found the queue corrupt.
func (q *Queue) waitData(ctx context.Context, ready func() bool) error {
	o := robust.WaitOptions{Closer: &q.closer, Waits: q.waits}
	var rerr error
	if q.producer() != nil {
		o.Watch = func() bool {
			ok, err := q.recoverProducer()
			rerr = err
			return ok
		}
		o.Holders = q.producer
	}
	err := robust.Wait(ctx, q.dataFx, ready, &o)
	if rerr != nil {
		return rerr
	}
	return waitErr(err)
}

// producer returns the producer lock's holder if it is another process:
// the holder a consumer waiting for data follows.
func (q *Queue) producer() []liveness.Token {
	if h, _ := q.plock.Holder(); h != 0 && h != q.plock.Token() {
		return []liveness.Token{h}
	}
	return nil
}

// waitSpace blocks until ready reports true (see "Waiting"): nil, then;
// ctx.Err() when ctx is done first; errClosed once the handle is closed.
func (q *Queue) waitSpace(ctx context.Context, ready func() bool) error {
	return waitErr(robust.Wait(ctx, q.spaceFx, ready, &robust.WaitOptions{Closer: &q.closer, Waits: q.waits}))
}

// waitErr is a wait's error as the queue returns it.
func waitErr(err error) error {
	if errors.Is(err, os.ErrClosed) {
		return errClosed
	}
	return err
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
