package spawn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
)

// Events: the reader goroutine takes the result queue's messages (results,
// ready reports and deaths, in queue order) and applies them under mu.

// read is the reader goroutine. When it is done (the result queue shut
// down once the pool has stopped, or failed), it waits for the pool to
// stop and for the goroutines in bg, and closes stopped: nothing uses the
// result queue then. It waits in Get with no deadline and no cancellable
// context, so that an idle pool's parent does not wake on a timer.
func (p *Pool[In, Out]) read() {
	defer func() {
		<-p.allGone
		p.bg.Wait()
		close(p.stopped)
	}()
	decs := map[uint64]*streamDec{}
	buf := make([]byte, 4<<10)
	for {
		msg, err := getInto(context.Background(), p.results, &buf)
		if err != nil {
			p.mu.Lock()
			gone := p.life.gone
			p.mu.Unlock()
			if gone && errors.Is(err, io.EOF) {
				return // maybeFinish shut the queue down
			}
			p.readerFailed(err) // a worker shut it down, or it is corrupt
			return
		}
		if len(msg) < serialLen+1 {
			continue
		}
		serial := binary.LittleEndian.Uint64(msg)
		flag := msg[serialLen]
		if flag == msgReady {
			p.mu.Lock()
			if w := p.workers[serial]; w != nil {
				w.ready = true
				p.startFails = 0
			}
			p.mu.Unlock()
			continue
		}
		if flag == msgDead {
			delete(decs, serial)
			p.mu.Lock()
			if w := p.workers[serial]; w != nil {
				p.onDeath(w)
			}
			p.mu.Unlock()
			continue
		}
		p.hooks.fault("result")
		d := decs[serial]
		if d == nil {
			d = new(streamDec)
			decs[serial] = d
		}
		var m resultMsg[Out]
		derr := d.decode(flag, msg[serialLen+1:], &m)
		p.mu.Lock()
		if w := p.workers[serial]; w != nil {
			if derr != nil {
				m = resultMsg[Out]{Fail: "spawn: pool cannot decode a worker's result: " + derr.Error()}
				if len(w.out) > 0 {
					m.ID = w.out[0].id
				}
				p.onResult(w, &m)
				w.killed = true // its result stream is lost
				w.proc.Kill()
			} else {
				p.onResult(w, &m)
			}
		}
		p.mu.Unlock()
		// A caller woken by this result sits in this P's run queue; let it
		// run now, not after the next spin on the result queue.
		runtime.Gosched()
	}
}

// readerFailed handles a result queue that returned an error other than
// cancellation (a corrupt queue): the pool breaks, and deaths are handled
// directly from now on.
func (p *Pool[In, Out]) readerFailed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.life.readerDead = true
	p.breakPool(fmt.Errorf("%w: result queue: %w", ErrBroken, err))
	for _, w := range p.workers {
		p.goBG(func() {
			<-w.proc.Done()
			p.mu.Lock()
			if p.workers[w.serial] == w {
				p.onDeath(w)
			}
			p.mu.Unlock()
		})
	}
}

// onResult applies a result message of w. Under mu.
func (p *Pool[In, Out]) onResult(w *worker[In, Out], m *resultMsg[Out]) {
	if len(w.out) == 0 || w.out[0].id != m.ID {
		return // not what w holds: a protocol error; its chunks run again if it dies
	}
	c := w.out[0]
	p.reports++
	w.lastReport = p.reports
	p.startFails = 0
	j := c.job
	switch {
	case m.Fail != "":
		for i := c.got; i < c.n; i++ {
			p.deliver(j, c.lo+i, *new(Out), &TaskError{Task: c.lo + i, Pid: w.proc.Pid, Msg: m.Fail})
		}
		c.got = c.n
	case m.Lo != c.got || m.N <= 0 || m.N > c.n-c.got || (m.Outs != nil && len(m.Outs) != m.N):
		return // impossible report: ignore it
	default:
		if m.Outs == nil {
			m.Outs = make([]Out, m.N)
		}
		restoreNils(m.Outs, m.Nil)
		failed := map[int]*itemErr{}
		for k := range m.Errs {
			failed[m.Errs[k].Pos] = &m.Errs[k]
		}
		for i := range m.N {
			pos := m.Lo + i
			if e := failed[pos]; e != nil {
				te := &TaskError{Task: c.lo + pos, Pid: w.proc.Pid, Msg: e.Msg, Panic: e.Panic, Stack: e.Stack, Matches: e.Matches}
				p.deliver(j, c.lo+pos, m.Outs[i], te)
			} else {
				p.deliver(j, c.lo+pos, m.Outs[i], nil)
			}
		}
		c.got += m.N
	}
	if c.got == c.n {
		w.out[0] = nil
		w.out = w.out[1:]
	}
	p.dispatch()
	p.maybeDrain()
}

// onDeath handles the exit of w, after all its results. Under mu.
func (p *Pool[In, Out]) onDeath(w *worker[In, Out]) {
	delete(p.workers, w.serial)
	werr := w.proc.Wait() // reaped already: returns at once
	blame := -1
	if !w.killed && len(w.out) > 0 {
		c := w.out[0]
		if r := w.ctl.Load(ctlRec); recChunk(r) == uint32(c.id) && recPos(r)-1 >= c.got && recPos(r)-1 < c.n {
			blame = recPos(r) - 1
		}
	}
	var again []*chunk[In, Out]
	for k, c := range w.out {
		if c.job.finished {
			continue
		}
		if k == 0 && blame >= 0 {
			p.deliver(c.job, c.lo+blame, *new(Out), newWorkerError(w, werr, c.lo+blame))
			again = p.appendChunk(again, c.job, c.lo+c.got, blame-c.got)
			again = p.appendChunk(again, c.job, c.lo+blame+1, c.n-blame-1)
			continue
		}
		again = p.appendChunk(again, c.job, c.lo+c.got, c.n-c.got)
	}
	w.out = nil
	p.pending = append(again, p.pending...)
	w.release()
	if werr != nil && !w.killed && !w.ready && blame < 0 && !p.stopping() && signalOf(werr) == nil {
		p.startFails++
		if p.startFails >= maxStartFails {
			p.breakPool(fmt.Errorf("%w: %w", ErrBroken, newWorkerError(w, werr, -1)))
		}
	}
	if p.wantsWorkers() && len(p.workers)+p.starting < p.opts.Workers {
		p.starting++
		p.goBG(p.replace)
	}
	p.dispatch()
	p.maybeDrain()
	p.maybeFinish()
}
