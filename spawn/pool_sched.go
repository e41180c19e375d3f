package spawn

import "fmt"

// Scheduling: the pending chunks of every call go to the workers with room,
// fewest chunks first. All under Pool.mu.

// chunk is items lo .. lo+n-1 of a job; got of them are reported.
type chunk[In, Out any] struct {
	id     uint64
	job    *job[In, Out]
	lo, n  int
	got    int
	worker *worker[In, Out]
}

// appendChunk appends a new chunk of n items of j at lo, if n > 0.
func (p *Pool[In, Out]) appendChunk(cs []*chunk[In, Out], j *job[In, Out], lo, n int) []*chunk[In, Out] {
	if n <= 0 {
		return cs
	}
	p.chunkID++
	return append(cs, &chunk[In, Out]{id: p.chunkID, job: j, lo: lo, n: n})
}

// busy reports whether any work of an unfinished call is pending or at a
// worker, or may yet come (a streaming call still reading its input) (a chunk of a call that ended, cancelled or abandoned, does not
// count: maybeDrain kills the workers that hold only such chunks). Under
// mu.
func (p *Pool[In, Out]) busy() bool {
	for j := range p.jobs {
		if j.open && !j.finished {
			return true // a streaming call's input may bring more
		}
	}
	for _, c := range p.pending {
		if !c.job.finished {
			return true
		}
	}
	for _, w := range p.workers {
		for _, c := range w.out {
			if !c.job.finished {
				return true
			}
		}
	}
	return false
}

// dispatch sends pending chunks to workers with room. Under mu.
func (p *Pool[In, Out]) dispatch() {
	for len(p.pending) > 0 {
		c := p.pending[0]
		if c.job.finished {
			p.popPending()
			continue
		}
		var best *worker[In, Out]
		for _, w := range p.workers {
			if w.killed || w.drained || w.stuck || len(w.out) >= maxOutstanding {
				continue
			}
			// Fewest chunks first; among equals, the worker that reported
			// last: it is the one most likely still spinning on its task
			// queue (an idle one's budget decays and it sleeps), so a
			// trickle of tasks keeps one worker hot instead of waking
			// each in turn from a futex sleep.
			if best == nil || len(w.out) < len(best.out) ||
				(len(w.out) == len(best.out) && w.lastReport > best.lastReport) {
				best = w
			}
		}
		if best == nil {
			return
		}
		p.popPending()
		p.send(best, c)
	}
}

func (p *Pool[In, Out]) popPending() {
	p.pending[0] = nil
	p.pending = p.pending[1:]
	if len(p.pending) == 0 {
		p.pending = nil
	}
}

// send puts chunk c on w's task queue, or splits it in halves (back to
// the front of pending) if its message is too large or does not encode (an
// interface holding an unregistered type, say), or fails it if it is a
// single item. Under mu.
func (p *Pool[In, Out]) send(w *worker[In, Out], c *chunk[In, Out]) {
	items, nils := withoutNils(c.job.in[c.lo-c.job.base : c.lo-c.job.base+c.n])
	msg, err := w.enc.encode(&taskMsg[In]{ID: c.id, Items: items, Nil: nils})
	if err != nil || len(msg) > w.tasks.MaxMsg() {
		w.enc.drop()
		if c.n > 1 {
			h := c.n / 2
			p.pending = append(p.appendChunk(p.appendChunk(nil, c.job, c.lo, h), c.job, c.lo+h, c.n-h), p.pending...)
			return
		}
		m := fmt.Sprintf("spawn: task of %d bytes exceeds the task queue's maximum message (%d)", len(msg), w.tasks.MaxMsg())
		if err != nil {
			m = "spawn: encode task: " + err.Error()
		}
		p.deliver(c.job, c.lo, *new(Out), &TaskError{Task: c.lo, Msg: m})
		return
	}
	ok, err := w.tasks.TryPut(msg)
	if !ok || err != nil {
		w.enc.drop()
		w.stuck = true
		p.pending = append([]*chunk[In, Out]{c}, p.pending...)
		return
	}
	c.worker = w
	w.out = append(w.out, c)
}
