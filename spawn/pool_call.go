package spawn

import (
	"context"
	"iter"
)

// job is one call's items: a Map, an Imap, or a Go (one item). Its fields
// after in are guarded by Pool.mu; outs and errs are written before fin is
// closed (or an index is published in done), and read after.
type job[In, Out any] struct {
	in   []In
	outs []Out
	errs []error // nil until an item fails
	left int
	fin  chan struct{}

	finished bool
	abort    error // the pool closed or broke: the call returns this
	cancel   error // the call's ctx was cancelled: ctx.Err()
	stopCtx  func() bool

	// Streaming calls (Imap, ImapUnordered): indices delivered and not yet
	// taken by the iterator, and a wake-up for it.
	stream bool
	done   []int
	sig    chan struct{}
}

func newJob[In, Out any](in []In, stream bool) *job[In, Out] {
	j := &job[In, Out]{in: in, outs: make([]Out, len(in)), left: len(in), fin: make(chan struct{}), stream: stream}
	if stream {
		j.sig = make(chan struct{}, 1)
	}
	return j
}

// deliver records item i's result. Under mu.
func (p *Pool[In, Out]) deliver(j *job[In, Out], i int, out Out, err error) {
	if j.finished {
		return
	}
	j.outs[i] = out
	if err != nil {
		if j.errs == nil {
			j.errs = make([]error, len(j.in))
		}
		j.errs[i] = err
	}
	j.left--
	if j.stream {
		j.done = append(j.done, i)
		j.wake()
	}
	if j.left == 0 {
		p.finish(j)
	}
}

func (j *job[In, Out]) wake() {
	select {
	case j.sig <- struct{}{}:
	default:
	}
}

// finish ends j. Under mu.
func (p *Pool[In, Out]) finish(j *job[In, Out]) {
	if j.finished {
		return
	}
	j.finished = true
	delete(p.jobs, j)
	close(j.fin)
	if j.stream {
		j.wake()
	}
	if j.stopCtx != nil {
		j.stopCtx()
	}
}

// abort ends j with err. Under mu.
func (p *Pool[In, Out]) abort(j *job[In, Out], err error) {
	if !j.finished {
		j.abort = err
		p.finish(j)
	}
}

// cancelJob ends j because its call's context ended, or its Imap loop
// did, and leaves nothing of it running or queued: its pending chunks are
// dropped, every worker holding one of its chunks is told to skip it, and
// a worker running one of its items is killed (and replaced), so that the
// pool is free again at once. See "Cancelling a call" in pool_worker.go.
func (p *Pool[In, Out]) cancelJob(j *job[In, Out], err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if j.finished {
		return
	}
	j.cancel = err
	p.finish(j)
	kept := p.pending[:0]
	for _, c := range p.pending {
		if c.job != j {
			kept = append(kept, c)
		}
	}
	clear(p.pending[len(kept):])
	p.pending = kept
	for _, w := range p.workers {
		w.cancel(j)
	}
	p.maybeDrain()
}

// submit queues j's items in chunks of size and registers ctx's
// cancellation.
func (p *Pool[In, Out]) submit(ctx context.Context, j *job[In, Out], size int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ctx.Done() != nil {
		j.stopCtx = context.AfterFunc(ctx, func() { p.cancelJob(j, ctx.Err()) })
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.checkParent()
	if err := p.takes(); err != nil {
		if j.stopCtx != nil {
			j.stopCtx()
		}
		return err
	}
	if j.finished { // cancelled already
		return j.cancel
	}
	if len(j.in) == 0 {
		p.finish(j)
		return nil
	}
	p.jobs[j] = struct{}{}
	for lo := 0; lo < len(j.in); lo += size {
		p.pending = p.appendChunk(p.pending, j, lo, min(size, len(j.in)-lo))
	}
	p.dispatch()
	return nil
}

// chunkSize returns the chunk size for n items.
func (p *Pool[In, Out]) chunkSize(n int) int {
	size := p.opts.ChunkSize
	if size <= 0 {
		d := 4 * p.opts.Workers
		size = min((n+d-1)/d, maxAutoChunk)
	}
	if m := p.opts.MaxTasksPerWorker; m > 0 {
		size = min(size, m)
	}
	return max(size, 1)
}

// Map runs the task on every item of xs and returns the results in the
// order of xs: Python's Pool.map. If some items fail, Map returns every
// result (zero for a failed item) and a [*MapError] naming each failure
// (a [*TaskError] or a [*WorkerError]). If ctx is cancelled first, Map
// returns nil and ctx.Err() at once, drops the items not yet started, and
// kills (and replaces) the workers running its items: no item of xs
// starts after Map has returned. After [Pool.Shutdown] it returns
// [ErrShutdown]; once the pool is closed (or closing), an error matching
// os.ErrClosed; once it is broken, the error that broke it. Map does not
// retain xs after it returns.
func (p *Pool[In, Out]) Map(ctx context.Context, xs []In) ([]Out, error) {
	j := newJob[In, Out](xs, false)
	if err := p.submit(ctx, j, p.chunkSize(len(xs))); err != nil {
		return nil, err
	}
	select {
	case <-j.fin:
	case <-ctx.Done():
		p.cancelJob(j, ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case j.abort != nil:
		return nil, j.abort
	case j.cancel != nil:
		return nil, j.cancel
	}
	return j.outs, mapError(j.errs)
}

func mapError(errs []error) error {
	if errs == nil {
		return nil
	}
	me := &MapError{Total: len(errs)}
	for _, e := range errs {
		if e != nil {
			me.Errs = append(me.Errs, e)
		}
	}
	return me
}

// Imap runs the task on every item of xs and yields the results in the
// order of xs, each as soon as it and the ones before it are done: Python's
// Pool.imap. A failed item yields its error (a [*TaskError] or a
// [*WorkerError]) and the iteration goes on. If ctx is cancelled, or the
// pool cannot finish the call (see [Pool.Map] for its errors), it yields
// one last (zero, error) and stops. Breaking out
// of the loop drops the items not yet started and kills (and replaces) the
// workers running its items.
func (p *Pool[In, Out]) Imap(ctx context.Context, xs []In) iter.Seq2[Out, error] {
	return func(yield func(Out, error) bool) {
		var zero Out
		j := newJob[In, Out](xs, true)
		if err := p.submit(ctx, j, p.chunkSize(len(xs))); err != nil {
			yield(zero, err)
			return
		}
		defer p.cancelJob(j, context.Canceled)
		ready := make([]bool, len(xs))
		var outs []Out
		var errs []error
		next := 0
		for next < len(xs) {
			p.mu.Lock()
			for _, i := range j.done {
				ready[i] = true
			}
			j.done = j.done[:0]
			outs, errs = outs[:0], errs[:0]
			for k := next; k < len(xs) && ready[k]; k++ {
				outs = append(outs, j.outs[k])
				var e error
				if j.errs != nil {
					e = j.errs[k]
				}
				errs = append(errs, e)
			}
			stop := j.abort
			if stop == nil {
				stop = j.cancel
			}
			p.mu.Unlock()
			for k := range outs {
				next++
				if !yield(outs[k], errs[k]) {
					return
				}
			}
			if len(outs) > 0 {
				continue
			}
			if stop != nil {
				yield(zero, stop)
				return
			}
			select {
			case <-j.sig:
			case <-ctx.Done():
				p.cancelJob(j, ctx.Err())
			}
		}
	}
}

// Result is one item's outcome in [Pool.ImapUnordered]. It is a plain
// value: copy it freely. The zero Result is a zero Value without error.
type Result[Out any] struct {
	Value Out
	Err   error // nil, a [*TaskError] or a [*WorkerError]
}

// ImapUnordered runs the task on every item of xs and yields each result
// as soon as it is done, with its index in xs: Python's
// Pool.imap_unordered. A failed item yields its index and a Result with the
// error, and the iteration goes on. If ctx is cancelled, or the pool
// cannot finish the call (see [Pool.Map] for its errors), it yields one
// last (-1, Result{Err: err}) and stops. Breaking
// out of the loop drops the items not yet started and kills (and replaces)
// the workers running its items.
func (p *Pool[In, Out]) ImapUnordered(ctx context.Context, xs []In) iter.Seq2[int, Result[Out]] {
	return func(yield func(int, Result[Out]) bool) {
		j := newJob[In, Out](xs, true)
		if err := p.submit(ctx, j, p.chunkSize(len(xs))); err != nil {
			yield(-1, Result[Out]{Err: err})
			return
		}
		defer p.cancelJob(j, context.Canceled)
		var idx []int
		var res []Result[Out]
		for n := 0; n < len(xs); {
			p.mu.Lock()
			idx, res = idx[:0], res[:0]
			for _, i := range j.done {
				var e error
				if j.errs != nil {
					e = j.errs[i]
				}
				idx = append(idx, i)
				res = append(res, Result[Out]{Value: j.outs[i], Err: e})
			}
			j.done = j.done[:0]
			stop := j.abort
			if stop == nil {
				stop = j.cancel
			}
			p.mu.Unlock()
			for k := range idx {
				n++
				if !yield(idx[k], res[k]) {
					return
				}
			}
			if len(idx) > 0 {
				continue
			}
			if stop != nil {
				yield(-1, Result[Out]{Err: stop})
				return
			}
			select {
			case <-j.sig:
			case <-ctx.Done():
				p.cancelJob(j, ctx.Err())
			}
		}
	}
}

// Future is the pending result of [Pool.Go]: Python's AsyncResult. It is
// safe for concurrent use, and used through the pointer Go returns (a copy
// would wait for the same result). The zero Future is not usable.
type Future[Out any] struct {
	fin <-chan struct{}
	get func() (Out, error)
	err error // submit failed
}

// Go submits the task on x and returns at once: Python's apply_async.
// Cancelling ctx before the task is done fails it with ctx.Err() and kills
// (and replaces) its worker if it is running.
func (p *Pool[In, Out]) Go(ctx context.Context, x In) *Future[Out] {
	j := newJob[In, Out]([]In{x}, false)
	if err := p.submit(ctx, j, 1); err != nil {
		c := make(chan struct{})
		close(c)
		return &Future[Out]{fin: c, err: err}
	}
	return &Future[Out]{fin: j.fin, get: func() (Out, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		var zero Out
		switch {
		case j.abort != nil:
			return zero, j.abort
		case j.cancel != nil:
			return zero, j.cancel
		case j.errs != nil:
			return j.outs[0], j.errs[0]
		}
		return j.outs[0], nil
	}}
}

// Done returns a channel that is closed when the result is ready.
func (f *Future[Out]) Done() <-chan struct{} { return f.fin }

// Get waits for the result and returns it: the task's output, or a
// [*TaskError], a [*WorkerError], the ctx.Err() of the ctx given to Go, or
// the pool's error. If ctx (Get's) is cancelled first, Get returns
// ctx.Err() and the task goes on.
func (f *Future[Out]) Get(ctx context.Context) (Out, error) {
	select {
	case <-f.fin:
	default:
		select {
		case <-f.fin:
		case <-ctx.Done():
			var zero Out
			return zero, ctx.Err()
		}
	}
	if f.err != nil {
		var zero Out
		return zero, f.err
	}
	return f.get()
}

// Apply runs the task on x and waits for its result: Python's Pool.apply.
func (p *Pool[In, Out]) Apply(ctx context.Context, x In) (Out, error) {
	return p.Go(ctx, x).Get(ctx)
}
