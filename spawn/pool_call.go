package spawn

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"slices"
	"sync/atomic"
)

// job is one call's items: a Map, an Imap, or a Go (one item). Its fields
// after in are guarded by Pool.mu; outs and errs are written before fin is
// closed (or an index is published in done), and read after. in, outs and
// errs of a streaming call grow as its input is read (under mu).
type job[In, Out any] struct {
	in   []In
	outs []Out
	errs []error // nil until an item fails; then as long as in, or shorter (nil for the rest)
	left int     // items queued and not yet delivered
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

	// Streaming calls read their input lazily (feed): open until the
	// input is exhausted; taken is the number of items at the start of
	// the input that the iterator has yielded (all of them, for Imap; up
	// to the oldest not yet yielded, for ImapUnordered, so that a slow
	// item also holds the reading back and the slots held stay within the
	// read-ahead window); room wakes the feeder when taken grows or the call ends;
	// inPanic is what the input sequence panicked with, if it did. The
	// job owns in and outs, and clears each value once it is no longer
	// needed, so that a long stream does not keep its items alive.
	open    bool
	taken   int
	room    chan struct{}
	inPanic any
	// ended is set when the job finishes: the feeder reads it at every
	// item the input yields, without mu.
	ended atomic.Bool
	// base is the index of in[0], outs[0] and errs[0]: a streaming call
	// drops the slots of the items its iterator has yielded (compact), so
	// that its memory is bounded by its read-ahead, not its length. Item
	// indices (chunks, deliver, done) are the call's own, from 0.
	base int
}

// total returns the number of items j has had: base and those it holds.
// Under mu.
func (j *job[In, Out]) total() int { return j.base + len(j.in) }

// minCompact is the fewest slots compact drops at once.
const minCompact = 256

// compact drops the slots of items before low, which must all be
// delivered and yielded, once they are at least half of the slots held
// (and minCompact), so that each slot is moved about once. Under mu.
func (j *job[In, Out]) compact(low int) {
	k := low - j.base
	if k < minCompact || 2*k < len(j.in) {
		return
	}
	j.in = slices.Delete(j.in, 0, k)
	j.outs = slices.Delete(j.outs, 0, k)
	if len(j.errs) > k {
		j.errs = slices.Delete(j.errs, 0, k)
	} else {
		j.errs = j.errs[:0]
	}
	j.base = low
}

func newJob[In, Out any](in []In, stream bool) *job[In, Out] {
	j := &job[In, Out]{in: in, outs: make([]Out, len(in)), left: len(in), fin: make(chan struct{}), stream: stream}
	if stream {
		j.sig = make(chan struct{}, 1)
	}
	return j
}

// newStreamJob returns the job of a streaming call, whose items feed
// adds.
func newStreamJob[In, Out any]() *job[In, Out] {
	j := newJob[In, Out](nil, true)
	j.open = true
	j.room = make(chan struct{}, 1)
	return j
}

// errAt returns item i's error, if it failed. Under mu.
func (j *job[In, Out]) errAt(i int) error {
	if i -= j.base; i < len(j.errs) {
		return j.errs[i]
	}
	return nil
}

// deliver records item i's result. Under mu.
func (p *Pool[In, Out]) deliver(j *job[In, Out], i int, out Out, err error) {
	if j.finished {
		return
	}
	s := i - j.base // the item's slot
	j.outs[s] = out
	if err != nil {
		if len(j.errs) < len(j.in) {
			j.errs = append(j.errs, make([]error, len(j.in)-len(j.errs))...)
		}
		j.errs[s] = err
	}
	j.left--
	if j.stream {
		if j.room != nil { // the job's own input: done with it
			var zero In
			j.in[s] = zero
		}
		j.done = append(j.done, i)
		j.wake()
	}
	if j.left == 0 && !j.open {
		p.finish(j)
	}
}

func (j *job[In, Out]) wake() {
	select {
	case j.sig <- struct{}{}:
	default:
	}
}

func (j *job[In, Out]) wakeFeeder() {
	select {
	case j.room <- struct{}{}:
	default:
	}
}

// finish ends j. Under mu.
func (p *Pool[In, Out]) finish(j *job[In, Out]) {
	if j.finished {
		return
	}
	j.finished = true
	j.ended.Store(true)
	delete(p.jobs, j)
	close(j.fin)
	if j.stream {
		j.wake()
	}
	if j.room != nil {
		j.wakeFeeder()
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
// cancellation. A streaming job (open) is registered with no items yet:
// feed queues them.
func (p *Pool[In, Out]) submit(ctx context.Context, j *job[In, Out], size int) error {
	if size <= 0 {
		return fmt.Errorf("spawn: chunk size %d: %w", size, os.ErrInvalid)
	}
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
	if len(j.in) == 0 && !j.open {
		p.finish(j)
		return nil
	}
	p.jobs[j] = struct{}{}
	p.queue(j, 0, len(j.in), size)
	return nil
}

// queue queues j's items lo .. hi-1 in chunks of size. Under mu.
func (p *Pool[In, Out]) queue(j *job[In, Out], lo, hi, size int) {
	for ; lo < hi; lo += size {
		p.pending = p.appendChunk(p.pending, j, lo, min(size, hi-lo))
	}
	p.dispatch()
}

// Chunk sizes
//
// As in Python, by default Map (and MapAsync) sends ceil(len/(4*Workers))
// items at once, and Imap and ImapUnordered one: their input's length is
// not known, and a caller watching results arrive (a progress bar) sees
// each as it is done. PoolOptions.ChunkSize sets another size for every
// call of the pool, Chunked for some calls; MaxTasksPerWorker bounds all.

// mapChunk returns Map's chunk size for n items.
func (p *Pool[In, Out]) mapChunk(n int) int {
	size := p.opts.ChunkSize
	if size <= 0 {
		d := 4 * p.opts.Workers
		size = max(min((n+d-1)/d, maxAutoChunk), 1)
	}
	return p.capChunk(size)
}

// imapChunk returns the chunk size of Imap and ImapUnordered.
func (p *Pool[In, Out]) imapChunk() int {
	size := p.opts.ChunkSize
	if size <= 0 {
		size = 1
	}
	return p.capChunk(size)
}

// capChunk bounds a chunk size by MaxTasksPerWorker. A size <= 0 is left
// as it is, for submit to refuse.
func (p *Pool[In, Out]) capChunk(size int) int {
	if m := p.opts.MaxTasksPerWorker; m > 0 && size > m {
		return m
	}
	return size
}

// readAhead returns how many items a streaming call with chunks of size
// reads from its input beyond those it has yielded: enough to keep every
// worker's queue full.
func (p *Pool[In, Out]) readAhead(size int) int {
	return size * p.opts.Workers * (maxOutstanding + 2)
}

// feed reads xs into streaming job j, queueing each chunk of size items
// as it fills, and stops reading while ahead items read are not yet
// yielded. It runs on its own goroutine, until xs is exhausted or j ends;
// if xs panics, it records the panic and cancels j.
func (p *Pool[In, Out]) feed(j *job[In, Out], xs iter.Seq[In], size, ahead int) {
	defer func() {
		if r := recover(); r != nil {
			p.mu.Lock()
			j.inPanic = r
			p.mu.Unlock()
			p.cancelJob(j, errInputPanicked)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		j.open = false
		if j.left == 0 {
			p.finish(j)
		}
		j.wake()
		p.maybeDrain()
	}()
	batch := make([]In, 0, size)
	flush := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if j.finished {
			return false
		}
		lo := j.total()
		j.in = append(j.in, batch...)
		j.outs = append(j.outs, make([]Out, len(batch))...)
		j.left += len(batch)
		p.queue(j, lo, j.total(), size)
		clear(batch)
		batch = batch[:0]
		for !j.finished && j.total()-j.taken >= ahead {
			p.mu.Unlock()
			<-j.room
			p.mu.Lock()
		}
		return !j.finished
	}
	for x := range xs {
		if j.ended.Load() {
			return
		}
		batch = append(batch, x)
		if len(batch) == size && !flush() {
			return
		}
	}
	if len(batch) > 0 {
		flush()
	}
}

// errInputPanicked is the end of a streaming call whose input panicked;
// the iterator panics with the input's value instead of yielding it.
var errInputPanicked = errors.New("spawn: the input sequence panicked")

// stream starts streaming call j over xs: it registers j and starts its
// feeder. end cancels what is left of j; call it once the iteration is
// over. end does not wait for the feeder: it may be inside xs, producing
// an item, for as long as xs likes (a blocked read, say), and the loop
// must end at once. The feeder ends at xs's next yield (which returns
// false) or when xs returns.
func (p *Pool[In, Out]) stream(ctx context.Context, xs iter.Seq[In], size int) (j *job[In, Out], end func(), err error) {
	j = newStreamJob[In, Out]()
	if err := p.submit(ctx, j, size); err != nil {
		return nil, nil, err
	}
	go p.feed(j, xs, size, p.readAhead(size))
	return j, func() { p.cancelJob(j, context.Canceled) }, nil
}

// stopped returns why j ended early, if it did. Under mu.
func (j *job[In, Out]) stopped() error {
	if j.abort != nil {
		return j.abort
	}
	return j.cancel
}

// Map runs the task on every item of xs and returns the results in the
// order of xs: Python's Pool.map, with its chunk size:
// ceil(len(xs)/(4*Workers)) items go to a worker at once, unless
// [PoolOptions.ChunkSize] or [Pool.Chunked] says otherwise. If some items
// fail, Map returns every result (zero for a failed item) and a
// [*MapError] naming each failure (a [*TaskError] or a [*WorkerError]). If
// ctx is cancelled first, Map returns nil and ctx.Err() at once, drops the
// items not yet started, and kills (and replaces) the workers running its
// items: no item of xs starts after Map has returned. After
// [Pool.Shutdown] it returns [ErrShutdown]; once the pool is closed (or
// closing), an error matching os.ErrClosed; once it is broken, the error
// that broke it. Map does not retain xs after it returns.
func (p *Pool[In, Out]) Map(ctx context.Context, xs []In) ([]Out, error) {
	return p.mapN(ctx, xs, p.mapChunk(len(xs)))
}

func (p *Pool[In, Out]) mapN(ctx context.Context, xs []In, size int) ([]Out, error) {
	j := newJob[In, Out](xs, false)
	if err := p.submit(ctx, j, size); err != nil {
		return nil, err
	}
	select {
	case <-j.fin:
	case <-ctx.Done():
		p.cancelJob(j, ctx.Err())
	}
	return p.mapResult(j)
}

// mapResult returns what a finished Map job returns.
func (p *Pool[In, Out]) mapResult(j *job[In, Out]) ([]Out, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := j.stopped(); err != nil {
		return nil, err
	}
	return j.outs, mapError(j.errs, len(j.in))
}

func mapError(errs []error, total int) error {
	if errs == nil {
		return nil
	}
	me := &MapError{Total: total}
	for _, e := range errs {
		if e != nil {
			me.Errs = append(me.Errs, e)
		}
	}
	return me
}

// MapAsync submits the task on every item of xs and returns at once:
// Python's Pool.map_async. The [Future]'s Get returns what [Pool.Map]
// would have: every result, and a [*MapError] if some items failed.
// Cancelling ctx before the call is done fails it with ctx.Err() and
// kills (and replaces) the workers running its items. The pool reads xs
// until the Future is done: do not change it before.
func (p *Pool[In, Out]) MapAsync(ctx context.Context, xs []In) *Future[[]Out] {
	return p.mapAsync(ctx, xs, p.mapChunk(len(xs)))
}

func (p *Pool[In, Out]) mapAsync(ctx context.Context, xs []In, size int) *Future[[]Out] {
	j := newJob[In, Out](xs, false)
	if err := p.submit(ctx, j, size); err != nil {
		return failedFuture[[]Out](err)
	}
	return &Future[[]Out]{fin: j.fin, get: func() ([]Out, error) { return p.mapResult(j) }}
}

// failedFuture returns a Future that is done, with err.
func failedFuture[Out any](err error) *Future[Out] {
	c := make(chan struct{})
	close(c)
	return &Future[Out]{fin: c, err: err}
}

// Imap runs the task on every item of xs and yields the results in the
// order of xs, each as soon as it and the ones before it are done: Python's
// Pool.imap. It reads xs lazily, as Python reads a generator, from another
// goroutine, while the results come: at most a few chunks per worker
// beyond the results yielded (a slow first item stops the reading until
// it is done). By default each item goes to a worker on its own (Python's
// chunksize 1), so results come one by one, at the cost of a round trip
// per item as with [Pool.Go] (tens of microseconds); [PoolOptions.ChunkSize]
// or [Pool.Chunked] sends more at once (about a microsecond per trivial
// item in chunks of hundreds). A slice is slices.Values(xs).
//
// A failed item yields its error (a [*TaskError] or a [*WorkerError]) and
// the iteration goes on: unlike Python's imap, whose loop ends at the
// exception. To stop at the first failure as Python does, break out of
// the loop when err != nil. If ctx is cancelled, or the pool cannot finish
// the call (see [Pool.Map] for its errors), it yields one last (zero,
// error) and stops. Breaking out of the loop drops the items not yet
// started and kills (and replaces) the workers running its items, and
// stops reading xs: its next yield returns false. The loop does not wait
// for xs: if xs is producing an item when the loop ends (blocked on a
// read, say), the loop returns at once, and the goroutine reading xs ends
// when xs next yields or returns (so an input that blocks forever keeps
// that goroutine; make it honour ctx). If xs panics while the loop runs,
// the loop panics with the same value; a panic after the loop has ended
// is dropped.
func (p *Pool[In, Out]) Imap(ctx context.Context, xs iter.Seq[In]) iter.Seq2[Out, error] {
	return p.imap(ctx, xs, p.imapChunk())
}

func (p *Pool[In, Out]) imap(ctx context.Context, xs iter.Seq[In], size int) iter.Seq2[Out, error] {
	return func(yield func(Out, error) bool) {
		var zero Out
		j, end, err := p.stream(ctx, xs, size)
		if err != nil {
			yield(zero, err)
			return
		}
		defer end()
		var ready []bool // by index - next: delivered, not yet yielded
		var outs []Out
		var errs []error
		next := 0 // the next index to yield
		for {
			p.mu.Lock()
			for _, i := range j.done {
				r := i - next
				if r >= len(ready) {
					ready = append(ready, make([]bool, r+1-len(ready))...)
				}
				ready[r] = true
			}
			j.done = j.done[:0]
			outs, errs = outs[:0], errs[:0]
			for k := next; k-next < len(ready) && ready[k-next]; k++ {
				outs = append(outs, j.outs[k-j.base])
				errs = append(errs, j.errAt(k))
				j.outs[k-j.base] = zero
			}
			ready = ready[:copy(ready, ready[len(outs):])]
			j.taken = next + len(outs)
			j.compact(j.taken)
			all := !j.open && j.taken == j.total()
			stop, pan := j.stopped(), j.inPanic
			p.mu.Unlock()
			if len(outs) > 0 {
				j.wakeFeeder()
			}
			for k := range outs {
				next++
				if !yield(outs[k], errs[k]) {
					return
				}
			}
			switch {
			case all:
				return
			case len(outs) > 0:
				continue
			case pan != nil:
				panic(pan)
			case stop != nil:
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
// Pool.imap_unordered. It reads xs lazily, one item to a worker at once
// by default, as [Pool.Imap] does. A failed item yields its index and a
// Result with the error, and the iteration goes on (break to stop at a
// failure). If ctx is cancelled, or the pool cannot finish the call (see
// [Pool.Map] for its errors), it yields one last (-1, Result{Err: err})
// and stops. Breaking out of the loop drops the items not yet started and
// kills (and replaces) the workers running its items, and stops reading
// xs as [Pool.Imap] does, without waiting for a read in progress.
func (p *Pool[In, Out]) ImapUnordered(ctx context.Context, xs iter.Seq[In]) iter.Seq2[int, Result[Out]] {
	return p.imapUnordered(ctx, xs, p.imapChunk())
}

func (p *Pool[In, Out]) imapUnordered(ctx context.Context, xs iter.Seq[In], size int) iter.Seq2[int, Result[Out]] {
	return func(yield func(int, Result[Out]) bool) {
		j, end, err := p.stream(ctx, xs, size)
		if err != nil {
			yield(-1, Result[Out]{Err: err})
			return
		}
		defer end()
		var zero Out
		var idx []int
		var res []Result[Out]
		var taken []bool // by index - low: yielded
		low := 0         // every item before low is yielded
		for n := 0; ; {
			p.mu.Lock()
			idx, res = idx[:0], res[:0]
			for _, i := range j.done {
				idx = append(idx, i)
				res = append(res, Result[Out]{Value: j.outs[i-j.base], Err: j.errAt(i)})
				j.outs[i-j.base] = zero
				r := i - low
				if r >= len(taken) {
					taken = append(taken, make([]bool, r+1-len(taken))...)
				}
				taken[r] = true
			}
			j.done = j.done[:0]
			k := 0
			for k < len(taken) && taken[k] {
				k++
			}
			taken, low = taken[:copy(taken, taken[k:])], low+k
			j.compact(low)
			j.taken = low
			all := !j.open && j.taken == j.total()
			stop, pan := j.stopped(), j.inPanic
			p.mu.Unlock()
			if len(idx) > 0 {
				j.wakeFeeder()
			}
			for k := range idx {
				n++
				if !yield(idx[k], res[k]) {
					return
				}
			}
			switch {
			case all:
				return
			case len(idx) > 0:
				continue
			case pan != nil:
				panic(pan)
			case stop != nil:
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

// Future is the pending result of [Pool.Go] or [Pool.MapAsync] (then Out
// is the slice of results): Python's AsyncResult. It is
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
		return failedFuture[Out](err)
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

// Chunked is a [Pool]'s calls that take many items, with a chunk size of
// their own: Python's chunksize argument of map, map_async, imap and
// imap_unordered. Make one with [Pool.Chunked]:
//
//	out, err := p.Chunked(100).Map(ctx, xs)
//	for y, err := range p.Chunked(16).Imap(ctx, walk) { ... }
//
// It is a small value holding the pool: copy it freely; it is safe for
// concurrent use as the pool is. The zero Chunked is not usable.
type Chunked[In, Out any] struct {
	p    *Pool[In, Out]
	size int
}

// Chunked returns p's calls with chunk size n: n items go to a worker at
// once (fewer if [PoolOptions.MaxTasksPerWorker] is smaller), whatever
// [PoolOptions.ChunkSize] says. Larger chunks cost less per item; smaller
// ones spread uneven items better, and deliver an Imap's results sooner.
// n must be positive: a call with n <= 0 fails with an error matching
// os.ErrInvalid.
func (p *Pool[In, Out]) Chunked(n int) Chunked[In, Out] { return Chunked[In, Out]{p: p, size: n} }

// Map is [Pool.Map] with c's chunk size.
func (c Chunked[In, Out]) Map(ctx context.Context, xs []In) ([]Out, error) {
	return c.p.mapN(ctx, xs, c.p.capChunk(c.size))
}

// MapAsync is [Pool.MapAsync] with c's chunk size.
func (c Chunked[In, Out]) MapAsync(ctx context.Context, xs []In) *Future[[]Out] {
	return c.p.mapAsync(ctx, xs, c.p.capChunk(c.size))
}

// Imap is [Pool.Imap] with c's chunk size: the input is read in chunks of
// that size, and a chunk goes to a worker once it is full (or the input
// ends).
func (c Chunked[In, Out]) Imap(ctx context.Context, xs iter.Seq[In]) iter.Seq2[Out, error] {
	return c.p.imap(ctx, xs, c.p.capChunk(c.size))
}

// ImapUnordered is [Pool.ImapUnordered] with c's chunk size, read as
// [Chunked.Imap] reads it.
func (c Chunked[In, Out]) ImapUnordered(ctx context.Context, xs iter.Seq[In]) iter.Seq2[int, Result[Out]] {
	return c.p.imapUnordered(ctx, xs, c.p.capChunk(c.size))
}
