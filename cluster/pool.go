package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipckit/ipckit/spawn"
)

var (
	// ErrNoWorker means no worker has ever served the task on this
	// server: no [Serve] with it has run, so its chunks would wait for
	// ever. [NewPool] fails with it; start a worker first.
	ErrNoWorker = errors.New("cluster: no worker serves this task")
	// ErrMaxDeliver is wrapped by the [*spawn.WorkerError] of an item
	// whose chunk was delivered MaxDeliver times without a result: each
	// worker that took it died or stalled past AckWait.
	ErrMaxDeliver = errors.New("cluster: task delivered MaxDeliver times without a result")
	// ErrTooLarge is matched (errors.Is) by the [*spawn.TaskError] of an
	// item whose input or result encodes to more than the server's max
	// payload. It is registered with [spawn.RegisterError], so it keeps
	// its identity when a worker reports it.
	ErrTooLarge = spawn.RegisterError(errors.New("cluster: item larger than the server's max payload"))
)

// Options configures a [Pool]. A nil *Options means the defaults, and so
// does the zero value of each field. NewPool copies the struct.
type Options struct {
	// Stream is the prefix of the streams and subjects, the same for the
	// pool and its workers (default "IPCKIT"): letters, digits, '-', '_'.
	Stream string
	// Storage is the streams' storage, if the pool creates them (default
	// FileStorage: tasks survive a server restart).
	Storage Storage
	// ChunkSize is the number of items sent in one message. 0 means
	// ceil(len(xs)/64), at most 1024, for Map, and 1 for the Imap calls,
	// which do not know their length (a chunk goes when full). A chunk
	// that encodes larger than the server's max payload is split.
	ChunkSize int
	// Window bounds the items of one Imap call sent and not yet reported
	// (default 4096): an endless sequence does not flood the stream.
	Window int
}

// Pool runs a [spawn.Task] on the workers of a NATS JetStream cluster (see
// [Serve]): the cluster's [spawn.Executor]. Make one with [NewPool]; the
// zero Pool is not usable. Its methods are safe for concurrent use and
// behave as [spawn.Pool]'s, with the differences in the package doc: a
// worker's death costs AckWait, not an item (its chunk runs again
// elsewhere, up to MaxDeliver times), and the pool has no processes of
// its own to shut down, only Close.
type Pool[In, Out any] struct {
	task    *spawn.Task[In, Out]
	nc      *nats.Conn
	js      jetstream.JetStream
	tasks   jetstream.Stream
	n       names
	id      string
	types   string
	opts    Options
	results jetstream.ConsumeContext
	adv     *nats.Subscription

	stopParent func() bool
	bg         sync.WaitGroup
	closeOnce  sync.Once

	mu     sync.Mutex
	calls  map[uint64]*call[Out]
	seqs   map[uint64]chunkRef // tasks stream sequence -> its chunk
	serial uint64
	closed error
}

// chunkRef is a published chunk: its call, first item and length.
type chunkRef struct {
	call  uint64
	lo, n int
}

// call is one Map, Imap, ImapUnordered or Go. Its fields are guarded by
// Pool.mu; outs and errs are written before fin is closed or an index is
// published in done, and read after.
type call[Out any] struct {
	id       uint64
	outs     []Out
	errs     []error // nil until an item fails
	got      []bool
	chunks   map[int]int // lo -> length, of the chunks published
	seqs     []uint64
	total    int // items in the call; -1 while an Imap is still feeding
	reported int
	finished bool
	end      error // the call ended early: ctx, the pool closed, a publish failed
	fin      chan struct{}
	stopCtx  func() bool
	onFinish func()

	stream bool
	done   []int         // indices reported and not yet taken by the iterator
	sig    chan struct{} // wakes the iterator
	room   chan struct{} // wakes the feeder
}

// NewPool returns a pool that runs task on the workers serving it through
// nc. opts may be nil. It creates the streams if needed and fails with
// [ErrNoWorker] if no worker has ever served task there. The end of ctx
// closes the pool, as [Pool.Close] does.
func NewPool[In, Out any](ctx context.Context, nc *nats.Conn, task *spawn.Task[In, Out], opts *Options) (*Pool[In, Out], error) {
	if task == nil || nc == nil {
		return nil, fmt.Errorf("cluster: NewPool with a nil task or connection: %w", os.ErrInvalid)
	}
	if err := checkTypes[In, Out](); err != nil {
		return nil, err
	}
	p := &Pool[In, Out]{
		task:  task,
		nc:    nc,
		id:    rand.Text(), // a subject token: A-Z, 2-7
		types: typesOf[In, Out](),
		calls: map[uint64]*call[Out]{},
		seqs:  map[uint64]chunkRef{},
	}
	if opts != nil {
		p.opts = *opts
	}
	if p.opts.Stream == "" {
		p.opts.Stream = "IPCKIT"
	}
	if err := validPrefix(p.opts.Stream); err != nil {
		return nil, err
	}
	if p.opts.Window <= 0 {
		p.opts.Window = 4096
	}
	p.n = names{p.opts.Stream}
	var err error
	if p.js, err = jetstream.New(nc); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if err := ensureStreams(ctx, p.js, p.n, p.opts.Storage); err != nil {
		return nil, err
	}
	if p.tasks, err = p.js.Stream(ctx, p.n.tasksStream()); err != nil {
		return nil, fmt.Errorf("cluster: stream %s: %w", p.n.tasksStream(), err)
	}
	if _, err := p.tasks.Consumer(ctx, p.n.taskConsumer(task.Name())); err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("%w: task %q (stream %s has no consumer %s): start cluster.Serve with it first",
				ErrNoWorker, task.Name(), p.n.tasksStream(), p.n.taskConsumer(task.Name()))
		}
		return nil, fmt.Errorf("cluster: task %q: %w", task.Name(), err)
	}
	if p.adv, err = nc.Subscribe(p.n.maxDeliverAdvisory(task.Name()), p.onAdvisory); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	cons, err := p.js.CreateConsumer(ctx, p.n.resultsStream(), jetstream.ConsumerConfig{
		Durable:           "res_" + p.id,
		FilterSubject:     p.n.resultSubject(p.id),
		AckPolicy:         jetstream.AckExplicitPolicy,
		InactiveThreshold: time.Hour, // a pool that vanished without Close
	})
	if err == nil {
		p.results, err = cons.Consume(p.onResult)
	}
	if err != nil {
		p.adv.Unsubscribe()
		return nil, fmt.Errorf("cluster: results consumer: %w", err)
	}
	p.stopParent = context.AfterFunc(ctx, func() { p.close(closedError{cause: context.Cause(ctx)}) })
	return p, nil
}

// Close ends the pool: every unfinished call fails with an error matching
// os.ErrClosed, its queued chunks are purged, and its results consumer is
// deleted. Later calls fail with an error matching os.ErrClosed. It is
// safe to call more than once and concurrently. Close does not close the
// connection.
func (p *Pool[In, Out]) Close() error { return p.close(errPoolClosed) }

func (p *Pool[In, Out]) close(why error) error {
	var err error
	p.closeOnce.Do(func() {
		p.stopParent()
		p.mu.Lock()
		p.closed = why
		cs := make([]*call[Out], 0, len(p.calls))
		for _, c := range p.calls {
			cs = append(cs, c)
		}
		for _, c := range cs {
			p.finish(c, why)
		}
		p.mu.Unlock()
		p.results.Stop()
		<-p.results.Closed()
		p.adv.Unsubscribe()
		p.bg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if len(cs) > 0 {
			p.nc.Publish(p.n.cancelSubject(p.id), []byte("*"))
		}
		err = errors.Join(
			p.purge(ctx, p.n.poolTasks(p.id)),
			p.js.DeleteConsumer(ctx, p.n.resultsStream(), "res_"+p.id))
		if e := p.purgeResults(ctx); e != nil {
			err = errors.Join(err, e)
		}
	})
	return err
}

func (p *Pool[In, Out]) purge(ctx context.Context, subject string) error {
	if err := p.tasks.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
		return fmt.Errorf("cluster: purge %s: %w", subject, err)
	}
	return nil
}

func (p *Pool[In, Out]) purgeResults(ctx context.Context) error {
	s, err := p.js.Stream(ctx, p.n.resultsStream())
	if err == nil {
		err = s.Purge(ctx, jetstream.WithPurgeSubject(p.n.resultSubject(p.id)))
	}
	if err != nil {
		return fmt.Errorf("cluster: purge results: %w", err)
	}
	return nil
}

// closedError is what the calls of a closed pool fail with: it matches
// os.ErrClosed, and wraps the cause when the end of NewPool's ctx closed
// the pool.
type closedError struct{ cause error }

var errPoolClosed error = closedError{}

func (e closedError) Error() string {
	if e.cause != nil {
		return "cluster: pool is closed: its context ended: " + e.cause.Error()
	}
	return "cluster: pool is closed"
}

func (e closedError) Is(target error) bool { return target == os.ErrClosed }

func (e closedError) Unwrap() error { return e.cause }

// start registers a new call; ctx's end cancels it.
func (p *Pool[In, Out]) start(ctx context.Context, stream bool) (*call[Out], error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &call[Out]{total: -1, chunks: map[int]int{}, fin: make(chan struct{}), stream: stream, sig: make(chan struct{}, 1), room: make(chan struct{}, 1)}
	p.mu.Lock()
	if p.closed != nil {
		p.mu.Unlock()
		return nil, p.closed
	}
	p.serial++
	c.id = p.serial
	p.calls[c.id] = c
	p.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { p.cancel(c, ctx.Err()) })
	p.mu.Lock()
	c.stopCtx = stop
	if c.finished {
		stop()
	}
	p.mu.Unlock()
	return c, nil
}

// grow makes room for items up to n. Under mu.
func (c *call[Out]) grow(n int) {
	if n <= len(c.outs) {
		return
	}
	c.outs = append(c.outs, make([]Out, n-len(c.outs))...)
	c.got = append(c.got, make([]bool, n-len(c.got))...)
	if c.errs != nil {
		c.errs = append(c.errs, make([]error, n-len(c.errs))...)
	}
}

// setTotal records that the call has n items.
func (p *Pool[In, Out]) setTotal(c *call[Out], n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.grow(n)
	c.total = n
	if c.reported == n {
		p.finish(c, nil)
	}
}

// deliver records item i's result, unless it has one: a chunk run twice
// reports once. Under mu.
func (p *Pool[In, Out]) deliver(c *call[Out], i int, out Out, err error) {
	if c.finished || i >= len(c.got) || c.got[i] {
		return
	}
	c.got[i] = true
	c.outs[i] = out
	if err != nil {
		if c.errs == nil {
			c.errs = make([]error, len(c.outs))
		}
		c.errs[i] = err
	}
	c.reported++
	if c.stream {
		c.done = append(c.done, i)
		c.wake()
	}
	if c.reported == c.total {
		p.finish(c, nil)
	}
}

func (c *call[Out]) wake() {
	for _, ch := range []chan struct{}{c.sig, c.room} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// finish ends c, with end if it ended early. Under mu.
func (p *Pool[In, Out]) finish(c *call[Out], end error) {
	if c.finished {
		return
	}
	c.finished = true
	c.end = end
	delete(p.calls, c.id)
	for _, s := range c.seqs {
		delete(p.seqs, s)
	}
	close(c.fin)
	c.wake()
	if c.stopCtx != nil {
		c.stopCtx()
	}
	if c.onFinish != nil {
		c.onFinish()
	}
}

// cancel ends c with err if it is not over, then tells the workers and
// purges its queued chunks, in the background: the caller returns at
// once.
func (p *Pool[In, Out]) cancel(c *call[Out], err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.finished || p.closed != nil {
		p.finish(c, err)
		return
	}
	p.finish(c, err)
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		p.nc.Publish(p.n.cancelSubject(p.id), []byte(strconv.FormatUint(c.id, 10)))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.purge(ctx, p.n.taskSubject(p.task.Name(), p.id, c.id))
	}()
}

// chunkSize is the items per message for a call of n items (n < 0:
// unknown).
func (p *Pool[In, Out]) chunkSize(n int) int {
	if p.opts.ChunkSize > 0 {
		return p.opts.ChunkSize
	}
	if n < 0 {
		return 1
	}
	return min(max((n+63)/64, 1), 1024)
}

// send publishes items lo.. of c as one chunk, or in halves if it does
// not fit in a message or does not encode; an item that cannot go alone
// fails at once with a *spawn.TaskError. A failed publish (the server is
// restarting, say) is retried with the same message ID, so the stream
// keeps one copy, until ctx ends or the connection is closed.
func (p *Pool[In, Out]) send(ctx context.Context, c *call[Out], lo int, items []In) error {
	p.mu.Lock()
	over := c.finished
	p.mu.Unlock()
	if over {
		return errCallOver
	}
	w := taskChunk[In]{Items: make([]wireItem[In], len(items))}
	for i, x := range items {
		w.Items[i].V = x
	}
	data, err := encode(&w)
	if err == nil && len(data) > int(p.nc.MaxPayload())-1024 {
		err = fmt.Errorf("%w: encodes to %d bytes, max payload %d", ErrTooLarge, len(data), p.nc.MaxPayload())
	}
	if err != nil {
		if len(items) > 1 {
			h := len(items) / 2
			if err := p.send(ctx, c, lo, items[:h]); err != nil {
				return err
			}
			return p.send(ctx, c, lo+h, items[h:])
		}
		p.mu.Lock()
		var zero Out
		p.deliver(c, lo, zero, &spawn.TaskError{Task: lo, Msg: "cluster: cannot send the item: " + err.Error(), Matches: spawn.ErrorKeys(err)})
		p.mu.Unlock()
		return nil
	}
	ref := msgRef{pool: p.id, call: c.id, lo: lo}
	m := nats.NewMsg(p.n.taskSubject(p.task.Name(), p.id, c.id))
	m.Data = data
	ref.setHeader(m.Header)
	m.Header.Set(hdrTask, p.task.Name())
	m.Header.Set(hdrTypes, p.types)
	p.mu.Lock()
	c.chunks[lo] = len(items)
	p.mu.Unlock()
	ack, err := publish(ctx, p.js, m, ref.id("t"), c.fin)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !c.finished {
		p.seqs[ack.Sequence] = chunkRef{call: c.id, lo: lo, n: len(items)}
		c.seqs = append(c.seqs, ack.Sequence)
	}
	return nil
}

// publishAttempt bounds one attempt of publish.
const publishAttempt = 3 * time.Second

// errCallOver is what publish returns when the call ended meanwhile.
var errCallOver = errors.New("cluster: the call is over")

// publish publishes m to its stream with message ID id, retrying while
// the server cannot be reached, until ctx ends, nc is closed or over is
// closed (nil: never).
func publish(ctx context.Context, js jetstream.JetStream, m *nats.Msg, id string, over <-chan struct{}) (*jetstream.PubAck, error) {
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		// Each attempt has its own timeout: a request sent while the
		// connection was down may never be answered, however long ctx.
		actx, cancel := context.WithTimeout(ctx, publishAttempt)
		ack, err := js.PublishMsg(actx, m, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if js.Conn().IsClosed() {
			return nil, fmt.Errorf("cluster: publish %s: %w", m.Subject, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-over:
			t.Stop()
			return nil, errCallOver
		}
	}
}

// onResult takes a result message (on a NATS goroutine).
func (p *Pool[In, Out]) onResult(m jetstream.Msg) {
	defer m.Ack()
	ref, err := refOf(m.Headers())
	if err != nil || ref.pool != p.id {
		return
	}
	var rc resultChunk[Out]
	derr := decode(m.Data(), &rc)
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls[ref.call]
	if c == nil {
		return // over; a late or repeated result
	}
	n := rc.N
	if rc.Fail != "" || derr != nil {
		if n == 0 {
			n = c.chunks[ref.lo]
		}
		msg := rc.Fail
		if derr != nil {
			msg = "cluster: cannot decode the results: " + derr.Error()
		}
		var zero Out
		for i := range n {
			p.deliver(c, ref.lo+i, zero, &spawn.TaskError{Task: ref.lo + i, Msg: msg})
		}
		return
	}
	fails := map[int]*itemErr{}
	for k := range rc.Errs {
		fails[rc.Errs[k].Pos] = &rc.Errs[k]
	}
	for i := range n {
		var out Out
		if i < len(rc.Outs) {
			out = rc.Outs[i].V
		}
		var e error
		if ie := fails[i]; ie != nil {
			e = ie.toError(ref.lo + i)
		}
		p.deliver(c, ref.lo+i, out, e)
	}
}

// maxDeliveries is the part of the server's max-deliveries advisory that
// the pool reads.
type maxDeliveries struct {
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// onAdvisory fails the items of a chunk that reached MaxDeliver, and
// deletes it from the stream, where a work queue would keep it.
func (p *Pool[In, Out]) onAdvisory(m *nats.Msg) {
	var a maxDeliveries
	if json.Unmarshal(m.Data, &a) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.seqs[a.StreamSeq]
	c := p.calls[r.call]
	if !ok || c == nil {
		return
	}
	delete(p.seqs, a.StreamSeq)
	var zero Out
	for i := range r.n {
		p.deliver(c, r.lo+i, zero, &spawn.WorkerError{Task: r.lo + i, ExitCode: -1,
			Err: fmt.Errorf("%w: task %q, items %d..%d, delivered %d times", ErrMaxDeliver, p.task.Name(), r.lo, r.lo+r.n-1, a.Deliveries)})
	}
	if p.closed == nil {
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			p.tasks.DeleteMsg(ctx, a.StreamSeq)
		}()
	}
}

// sendAll publishes xs in chunks of size, as items from lo.
func (p *Pool[In, Out]) sendAll(ctx context.Context, c *call[Out], xs []In, size int) error {
	for lo := 0; lo < len(xs); lo += size {
		if err := p.send(ctx, c, lo, xs[lo:min(lo+size, len(xs))]); err != nil {
			return err
		}
	}
	return nil
}

// ended returns the error c ended with, or nil. Under mu.
func (c *call[Out]) ended() error { return c.end }

// Map runs the task on every item of xs on the cluster's workers and
// returns the results in the order of xs, exactly one per item whatever
// was run again: Python's Pool.map. It fails and returns as
// [spawn.Pool.Map] does. If ctx is cancelled first, Map returns nil and
// ctx.Err() at once; the workers stop the call's running chunks and its
// queued chunks are purged, not run.
func (p *Pool[In, Out]) Map(ctx context.Context, xs []In) ([]Out, error) {
	c, err := p.start(ctx, false)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	c.grow(len(xs))
	p.mu.Unlock()
	if err := p.sendAll(ctx, c, xs, p.chunkSize(len(xs))); err != nil {
		p.cancel(c, err)
	} else {
		p.setTotal(c, len(xs))
	}
	<-c.fin
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.end != nil {
		return nil, c.end
	}
	return c.outs, mapError(c.errs)
}

func mapError(errs []error) error {
	if errs == nil {
		return nil
	}
	me := &spawn.MapError{Total: len(errs)}
	for _, e := range errs {
		if e != nil {
			me.Errs = append(me.Errs, e)
		}
	}
	return me
}

// feed sends the items of xs as they come, ChunkSize at a time, at most
// Window items ahead of the results, then records their number. It runs
// in its own goroutine for the Imap calls; ctx's end stops it.
func (p *Pool[In, Out]) feed(ctx context.Context, c *call[Out], xs iter.Seq[In]) {
	size := p.chunkSize(-1)
	window := max(p.opts.Window, 2*size)
	var buf []In
	n := 0
	flush := func() bool {
		for {
			p.mu.Lock()
			room := n-len(buf)-c.reported < window && !c.finished
			stop := c.finished
			if room || stop {
				c.grow(n)
			}
			p.mu.Unlock()
			if stop {
				return false
			}
			if room {
				break
			}
			select {
			case <-c.room: // a result came
			case <-ctx.Done():
				return false
			}
		}
		if err := p.send(ctx, c, n-len(buf), buf); err != nil {
			if ctx.Err() == nil {
				p.cancel(c, err)
			}
			return false
		}
		buf = buf[:0]
		return true
	}
	for x := range xs {
		buf = append(buf, x)
		n++
		if len(buf) == size && !flush() {
			return
		}
	}
	if len(buf) > 0 && !flush() {
		return
	}
	p.setTotal(c, n)
}

// stream starts an Imap call: the feeder's goroutine, and the function
// that stops it and cancels the call, for the iterator to defer.
func (p *Pool[In, Out]) stream(ctx context.Context, xs iter.Seq[In]) (*call[Out], func(), error) {
	c, err := p.start(ctx, true)
	if err != nil {
		return nil, nil, err
	}
	fctx, stopFeed := context.WithCancel(ctx)
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		p.feed(fctx, c, xs)
	}()
	return c, func() {
		stopFeed()
		<-fed
		p.cancel(c, context.Canceled)
	}, nil
}

// Imap runs the task on every item of xs and yields the results in the
// order of xs, each as soon as it and the ones before it are done:
// Python's Pool.imap. It behaves as [spawn.Pool.Imap]; xs is read in a
// goroutine of its own, as the results come, at most Options.Window items
// ahead of them. Breaking out of the loop cancels the rest of the call.
func (p *Pool[In, Out]) Imap(ctx context.Context, xs iter.Seq[In]) iter.Seq2[Out, error] {
	return func(yield func(Out, error) bool) {
		var zero Out
		c, stop, err := p.stream(ctx, xs)
		if err != nil {
			yield(zero, err)
			return
		}
		defer stop()
		var ready []bool
		next := 0
		for {
			p.mu.Lock()
			for _, i := range c.done {
				for i >= len(ready) {
					ready = append(ready, false)
				}
				ready[i] = true
			}
			c.done = c.done[:0]
			var outs []Out
			var errs []error
			for k := next; k < len(ready) && ready[k]; k++ {
				outs = append(outs, c.outs[k])
				var e error
				if c.errs != nil {
					e = c.errs[k]
				}
				errs = append(errs, e)
			}
			end, total := c.ended(), c.total
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
			if end != nil {
				yield(zero, end)
				return
			}
			if next == total {
				return
			}
			<-c.sig
		}
	}
}

// ImapUnordered runs the task on every item of xs and yields each result
// as soon as it is done, with its index in xs: Python's
// Pool.imap_unordered. It behaves as [spawn.Pool.ImapUnordered], and reads
// xs as [Pool.Imap] does.
func (p *Pool[In, Out]) ImapUnordered(ctx context.Context, xs iter.Seq[In]) iter.Seq2[int, spawn.Result[Out]] {
	return func(yield func(int, spawn.Result[Out]) bool) {
		c, stop, err := p.stream(ctx, xs)
		if err != nil {
			yield(-1, spawn.Result[Out]{Err: err})
			return
		}
		defer stop()
		n := 0
		for {
			p.mu.Lock()
			idx := append([]int(nil), c.done...)
			res := make([]spawn.Result[Out], len(idx))
			for k, i := range idx {
				res[k].Value = c.outs[i]
				if c.errs != nil {
					res[k].Err = c.errs[i]
				}
			}
			c.done = c.done[:0]
			end, total := c.ended(), c.total
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
			if end != nil {
				yield(-1, spawn.Result[Out]{Err: end})
				return
			}
			if n == total {
				return
			}
			<-c.sig
		}
	}
}

// Go submits the task on x and returns at once: Python's apply_async.
// Cancelling ctx before the result comes fails it with ctx.Err(), and the
// workers stop it or never start it.
func (p *Pool[In, Out]) Go(ctx context.Context, x In) *spawn.Future[Out] {
	f, settle := spawn.NewFuture[Out]()
	var zero Out
	c, err := p.start(ctx, false)
	if err != nil {
		settle(zero, err)
		return f
	}
	p.mu.Lock()
	c.grow(1)
	c.onFinish = func() { // under mu, once
		switch {
		case c.end != nil:
			settle(zero, c.end)
		case c.errs != nil:
			settle(c.outs[0], c.errs[0])
		default:
			settle(c.outs[0], nil)
		}
	}
	if c.finished {
		c.onFinish()
	}
	p.mu.Unlock()
	if err := p.send(ctx, c, 0, []In{x}); err != nil {
		p.cancel(c, err)
	} else {
		p.setTotal(c, 1)
	}
	return f
}

// Apply runs the task on x and waits for its result: Python's Pool.apply.
func (p *Pool[In, Out]) Apply(ctx context.Context, x In) (Out, error) {
	return p.Go(ctx, x).Get(ctx)
}

var _ spawn.Executor[int, int] = (*Pool[int, int])(nil)
