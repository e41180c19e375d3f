package spawn

import "context"

// Pool state
//
// A pool's life is one small state machine, guarded by Pool.mu, and every
// change of state goes through setState:
//
//	from                to            by
//	open                shuttingDown  Shutdown
//	open, shuttingDown  broken        breakPool: a worker cannot be started,
//	                                  maxStartFails start failures in a row,
//	                                  or the result queue failed
//	any other           closed        Close, or the end of NewPool's ctx
//
// States only move forward (open < shuttingDown < broken < closed), so a
// transition asked for late (Shutdown of a broken pool, a break found
// while closing) changes nothing. What each state means for the rest of
// the pool:
//
//	              new calls      a dead worker       workers
//	open          taken          replaced            run
//	shuttingDown  ErrShutdown    replaced while      exit when idle (their
//	                             work is left        task queues shut down)
//	broken        its error      not replaced        killed
//	closed        os.ErrClosed   not replaced        killed
//
// Once the state is not open and every worker is gone (none being started
// either), the pool has stopped: maybeFinish closes allGone, records what
// Shutdown returns, and shuts the result queue down, which ends the
// reader; the reader closes stopped once the goroutines in bg are done
// too; then release may free the result queue.

// poolState is where a pool is in its life; see above.
type poolState uint8

const (
	poolOpen         poolState = iota // taking work
	poolShuttingDown                  // Shutdown: finishing the work submitted
	poolBroken                        // the pool gave up: lifecycle.broken says why
	poolClosed                        // Close, or the end of NewPool's ctx
)

// lifecycle is a pool's state and what goes with it. Guarded by Pool.mu;
// changed only by setState and maybeFinish (gone, end) and readerFailed
// (readerDead).
type lifecycle struct {
	state  poolState
	broken error // why the pool broke, if it did (kept once it is closed)
	closed error // what calls fail with once closed: matches os.ErrClosed
	// gone is set when the pool has stopped: not open, and every worker
	// gone for good (allGone is closed, the reader told to stop).
	gone bool
	// end is what Shutdown returns once the pool has stopped: nil if it
	// stopped while shutting down, else the error of its broken or closed
	// state.
	end error
	// readerDead is set when the reader failed: deaths are then handled by
	// the watchers themselves (readerFailed).
	readerDead bool
}

// setState moves the pool to state to, if that is forward, and carries
// out what entering it means. err is why (broken) or what calls fail with
// (closed). Under mu.
func (p *Pool[In, Out]) setState(to poolState, err error) {
	from := p.life.state
	if to <= from {
		return
	}
	p.life.state = to
	switch to {
	case poolShuttingDown:
		p.maybeDrain()
	case poolBroken:
		p.life.broken = err
		p.stopAll(err)
	case poolClosed:
		p.life.closed = err
		if from != poolBroken { // a broken pool has stopped everything already
			p.stopAll(err)
		}
	}
	p.maybeFinish()
}

// stopping reports whether the pool kills its workers and replaces none
// (broken or closed). Under mu.
func (p *Pool[In, Out]) stopping() bool { return p.life.state >= poolBroken }

// wantsWorkers reports whether a dead worker is to be replaced: the pool
// is open, or shutting down with work left. Under mu.
func (p *Pool[In, Out]) wantsWorkers() bool {
	switch p.life.state {
	case poolOpen:
		return true
	case poolShuttingDown:
		return p.busy()
	}
	return false
}

// takes returns nil if the pool takes new work, else the error a call
// fails with. Under mu.
func (p *Pool[In, Out]) takes() error {
	switch p.life.state {
	case poolShuttingDown:
		return ErrShutdown
	case poolBroken:
		return p.life.broken
	case poolClosed:
		return p.life.closed
	}
	return nil
}

// checkParent closes the pool if NewPool's ctx has ended, in case the
// AfterFunc that does so has not run yet: a call made after the ctx's end
// must not be taken. (The AfterFunc still runs, and releases the pool.)
// Under mu.
func (p *Pool[In, Out]) checkParent() {
	if p.parent != nil && p.parent.Err() != nil {
		p.setState(poolClosed, closedError{cause: context.Cause(p.parent)})
	}
}

// breakPool breaks the pool with err, unless it is broken or closed
// already. Under mu.
func (p *Pool[In, Out]) breakPool(err error) { p.setState(poolBroken, err) }

// stopAll aborts every job with err and kills every worker. Under mu.
func (p *Pool[In, Out]) stopAll(err error) {
	for j := range p.jobs {
		p.abort(j, err)
	}
	p.pending = nil
	for _, w := range p.workers {
		w.killed = true
		w.proc.Kill()
	}
}

// maybeDrain shuts the task queues down once the pool is shutting down
// and idle, so that the workers exit; a worker that still holds chunks of
// calls that ended (an Imap broken out of, say) is killed rather than left
// to run them, perhaps forever. Under mu.
func (p *Pool[In, Out]) maybeDrain() {
	if p.life.state != poolShuttingDown || p.busy() {
		return
	}
	for _, w := range p.workers {
		if len(w.out) > 0 && !w.killed {
			w.killed = true
			w.proc.Kill()
		}
		if !w.drained {
			w.drained = true
			w.tasks.Shutdown()
		}
	}
}

// maybeFinish records that the pool has stopped, once it is not open and
// every worker is gone, and stops the reader. Under mu.
func (p *Pool[In, Out]) maybeFinish() {
	if p.life.gone || p.life.state == poolOpen || len(p.workers) > 0 || p.starting > 0 {
		return
	}
	p.life.gone = true
	switch p.life.state {
	case poolBroken:
		p.life.end = p.life.broken
	case poolClosed:
		p.life.end = p.life.closed
		if p.life.broken != nil {
			p.life.end = p.life.broken
		}
	}
	// The reader waits in Get without a deadline or a cancellable
	// context (either would wake it on a timer while the pool idles):
	// shutting the result queue down, which nobody puts on any more,
	// ends it (io.EOF once it has read everything). Not under mu: the
	// shutdown takes the queue's producer lock, which a worker killed
	// inside a Put may hold until it is found dead. In bg, added before
	// allGone is closed, so that the reader, which waits for allGone and
	// then for bg, waits for it too.
	p.goBG(func() { p.results.Shutdown() })
	close(p.allGone)
}
