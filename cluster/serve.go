package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipckit/ipckit/spawn"
)

// ServeOptions configures [Serve]. A nil *ServeOptions means the defaults,
// and so does the zero value of each field. Serve copies the struct.
type ServeOptions struct {
	// Stream is the prefix of the streams and subjects, as in
	// [Options.Stream] (default "IPCKIT").
	Stream string
	// Storage is the streams' storage, if Serve creates them (default
	// FileStorage).
	Storage Storage
	// Workers is the number of processes of each task's local
	// [spawn.Pool], and of chunks each task runs at once (default
	// runtime.NumCPU()).
	Workers int
	// AckWait is how long a chunk's worker may go silent before the
	// chunk is delivered to another (default 30s). A worker running a
	// chunk reports progress every AckWait/3, so a long task is not
	// redelivered; only a dead or stalled worker is.
	AckWait time.Duration
	// MaxDeliver is how many times a chunk is delivered before its items
	// fail with [ErrMaxDeliver] (default 3).
	MaxDeliver int
	// Pool configures the local pools (Workers above overrides its
	// Workers); nil means spawn's defaults.
	Pool *spawn.PoolOptions
}

// Handler is a task that [Serve] runs, made by [Handle].
type Handler interface {
	// Name returns the task's registered name.
	Name() string
	start(ctx context.Context, w *worker) (func(), error)
}

// Handle returns task as a [Handler] for [Serve].
func Handle[In, Out any](task *spawn.Task[In, Out]) Handler { return &handler[In, Out]{task: task} }

// Serve runs a worker: it takes the chunks of tasks from the stream (on
// the connection nc), runs them in a local [spawn.Pool] per task (so
// spawn.Main must have been called), and sends their results back, until
// ctx ends; it then stops the chunks it is running, which go to other
// workers, and returns nil. Any number of workers may serve a task, on any
// machine; a worker may serve several tasks, and workers may serve
// different sets. It fails if a stream, a consumer or a local pool cannot
// be made, or a local pool breaks.
func Serve(ctx context.Context, nc *nats.Conn, opts *ServeOptions, tasks ...Handler) error {
	w := &worker{nc: nc, cancelled: map[string]time.Time{}, running: map[string]map[*runningChunk]struct{}{}}
	if opts != nil {
		w.opts = *opts
	}
	o := &w.opts
	if o.Stream == "" {
		o.Stream = "IPCKIT"
	}
	if err := validPrefix(o.Stream); err != nil {
		return err
	}
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = 3
	}
	if len(tasks) == 0 {
		return fmt.Errorf("cluster: Serve with no task: %w", os.ErrInvalid)
	}
	w.n = names{o.Stream}
	var err error
	if w.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := ensureStreams(ctx, w.js, w.n, o.Storage); err != nil {
		return err
	}
	sub, err := nc.Subscribe(w.n.cancelAll(), w.onCancel)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer sub.Unsubscribe()
	ctx, w.fail = context.WithCancelCause(ctx)
	defer w.fail(nil)
	var stops []func()
	for _, h := range tasks {
		stop, err := h.start(ctx, w)
		if err != nil {
			w.fail(err)
			for _, s := range stops {
				s()
			}
			return err
		}
		stops = append(stops, stop)
	}
	<-ctx.Done()
	for _, s := range stops {
		s()
	}
	if err := context.Cause(ctx); !errors.Is(err, ctx.Err()) || errors.Is(err, errServe) {
		return err
	}
	return nil
}

// errServe marks the errors that end Serve from inside.
var errServe = errors.New("cluster: worker failed")

// worker is one Serve: what its tasks share.
type worker struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	n    names
	opts ServeOptions
	fail context.CancelCauseFunc

	mu        sync.Mutex
	cancelled map[string]time.Time // "pool.call" or "pool.*" -> when
	running   map[string]map[*runningChunk]struct{}
}

// runningChunk is a chunk being run, and how to stop it.
type runningChunk struct{ stop context.CancelFunc }

func callKey(pool, call string) string { return pool + "." + call }

// onCancel records a cancelled call (or a closed pool: "*") and stops its
// running chunks.
func (w *worker) onCancel(m *nats.Msg) {
	pool := m.Subject[len(w.n.cancelSubject("")):]
	key := callKey(pool, string(m.Data))
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.cancelled) > 4096 {
		for k, t := range w.cancelled {
			if now.Sub(t) > 10*time.Minute {
				delete(w.cancelled, k)
			}
		}
	}
	w.cancelled[key] = now
	for k, rs := range w.running {
		if k == key || string(m.Data) == "*" && strings.HasPrefix(k, pool+".") {
			for r := range rs {
				r.stop()
			}
		}
	}
}

// track registers a chunk of call key as running, unless the call is
// cancelled; untrack with the returned function.
func (w *worker) track(pool, call string, r *runningChunk) (untrack func(), ok bool) {
	key := callKey(pool, call)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, c := w.cancelled[key]; c {
		return nil, false
	}
	if _, c := w.cancelled[callKey(pool, "*")]; c {
		return nil, false
	}
	if w.running[key] == nil {
		w.running[key] = map[*runningChunk]struct{}{}
	}
	w.running[key][r] = struct{}{}
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.running[key], r)
		if len(w.running[key]) == 0 {
			delete(w.running, key)
		}
	}, true
}

// handler serves one task.
type handler[In, Out any] struct {
	task  *spawn.Task[In, Out]
	w     *worker
	pool  *spawn.Pool[In, Out]
	types string
}

func (h *handler[In, Out]) Name() string { return h.task.Name() }

// start makes the task's local pool and consumer, and starts taking its
// chunks; the function returned stops and waits for that, then closes the
// pool.
func (h *handler[In, Out]) start(ctx context.Context, w *worker) (func(), error) {
	h.w, h.types = w, typesOf[In, Out]()
	var po spawn.PoolOptions
	if w.opts.Pool != nil {
		po = *w.opts.Pool
	}
	po.Workers = w.opts.Workers
	var err error
	if h.pool, err = spawn.NewPool(context.WithoutCancel(ctx), h.task, &po); err != nil {
		return nil, fmt.Errorf("cluster: task %q: local pool: %w", h.task.Name(), err)
	}
	cons, err := w.js.CreateOrUpdateConsumer(ctx, w.n.tasksStream(), jetstream.ConsumerConfig{
		Durable:       w.n.taskConsumer(h.task.Name()),
		FilterSubject: w.n.taskFilter(h.task.Name()),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.opts.AckWait,
		MaxDeliver:    w.opts.MaxDeliver,
	})
	if err != nil {
		h.pool.Close()
		return nil, fmt.Errorf("cluster: task %q: consumer: %w", h.task.Name(), err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.loop(ctx, cons)
	}()
	return func() {
		<-done
		h.pool.Close()
	}, nil
}

// loop fetches chunks while a slot is free, and runs each in a goroutine
// of its own, until ctx ends; then it waits for them.
func (h *handler[In, Out]) loop(ctx context.Context, cons jetstream.Consumer) {
	slots := make(chan struct{}, h.w.opts.Workers)
	var running sync.WaitGroup
	defer running.Wait()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		free := 1
	fill:
		for free < cap(slots) {
			select {
			case slots <- struct{}{}:
				free++
			default:
				break fill
			}
		}
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		batch, err := cons.Fetch(free, jetstream.FetchContext(fctx))
		if err == nil {
			for m := range batch.Messages() {
				free--
				running.Add(1)
				go func() {
					defer running.Done()
					defer func() { <-slots }()
					h.run(ctx, m)
				}()
			}
		}
		cancel()
		for range free {
			<-slots
		}
		if err != nil { // the server is away: wait a little
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
}

// run runs one chunk and acknowledges it once its results are stored.
// A chunk of a cancelled call is acknowledged without a result; a chunk
// Serve's end interrupted is given back (Nak) to run elsewhere.
func (h *handler[In, Out]) run(ctx context.Context, m jetstream.Msg) {
	hd := m.Headers()
	ref, err := refOf(hd)
	if err != nil {
		m.Term() // never deliverable
		return
	}
	if got := hd.Get(hdrTypes); got != h.types || hd.Get(hdrTask) != h.task.Name() {
		h.fail(ctx, m, ref, 0, fmt.Sprintf("cluster: task %q %s: the worker's takes %s: %v",
			hd.Get(hdrTask), got, h.types, spawn.ErrMismatch))
		return
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	untrack, ok := h.w.track(ref.pool, fmt.Sprint(ref.call), &runningChunk{stop: stop})
	if !ok {
		m.Ack()
		return
	}
	defer untrack()
	var tc taskChunk[In]
	if err := decode(m.Data(), &tc); err != nil {
		h.fail(ctx, m, ref, 0, "cluster: worker cannot decode the task: "+err.Error())
		return
	}
	items := make([]In, len(tc.Items))
	for i := range tc.Items {
		items[i] = tc.Items[i].V
	}
	stopBeat := heartbeat(m, h.w.opts.AckWait/3)
	outs, err := h.pool.Map(rctx, items)
	stopBeat()
	var me *spawn.MapError
	switch {
	case ctx.Err() != nil:
		m.Nak() // Serve is ending: run it elsewhere
		return
	case rctx.Err() != nil:
		m.Ack() // the call was cancelled
		return
	case err != nil && !errors.As(err, &me):
		m.Nak()
		h.w.fail(fmt.Errorf("%w: task %q: local pool: %w", errServe, h.task.Name(), err))
		return
	}
	var errs []itemErr
	if me != nil {
		for _, e := range me.Errs {
			var te *spawn.TaskError
			var we *spawn.WorkerError
			pos := -1
			if errors.As(e, &te) {
				pos = te.Task
			} else if errors.As(e, &we) {
				pos = we.Task
			}
			if pos >= 0 {
				errs = append(errs, toItemErr(pos, e))
			}
		}
	}
	if err := h.reply(ctx, ref, outs, errs); err != nil {
		return // no ack: delivered again after AckWait
	}
	m.Ack()
}

// fail answers a chunk that cannot run with a failure for all its items,
// and acknowledges it.
func (h *handler[In, Out]) fail(ctx context.Context, m jetstream.Msg, ref msgRef, n int, msg string) {
	if h.send(ctx, ref, &resultChunk[Out]{N: n, Fail: msg}) == nil {
		m.Ack()
	}
}

// reply sends the results of items ref.lo.., in halves if they do not fit
// in one message or do not encode: only a result that cannot go alone
// fails, with a *spawn.TaskError. errs' positions are from ref.lo.
func (h *handler[In, Out]) reply(ctx context.Context, ref msgRef, outs []Out, errs []itemErr) error {
	rc := resultChunk[Out]{N: len(outs), Outs: make([]wireItem[Out], len(outs)), Errs: errs}
	failed := map[int]bool{}
	for _, e := range errs {
		failed[e.Pos] = true
	}
	for i, o := range outs {
		if !failed[i] {
			rc.Outs[i].V = o
		}
	}
	err := h.send(ctx, ref, &rc)
	if !errors.Is(err, errUnsendable) {
		return err
	}
	if len(outs) == 1 {
		return h.send(ctx, ref, &resultChunk[Out]{N: 1, Errs: []itemErr{{Msg: "cluster: cannot send the result: " + err.Error()}}})
	}
	half := len(outs) / 2
	var a, b []itemErr
	for _, e := range errs {
		if e.Pos < half {
			a = append(a, e)
		} else {
			e.Pos -= half
			b = append(b, e)
		}
	}
	if err := h.reply(ctx, ref, outs[:half], a); err != nil {
		return err
	}
	ref.lo += half
	return h.reply(ctx, ref, outs[half:], b)
}

// errUnsendable marks a result message that does not encode or fit.
var errUnsendable = errors.New("cluster: result message cannot be sent")

// send publishes rc as the result of ref, retrying for up to AckWait.
func (h *handler[In, Out]) send(ctx context.Context, ref msgRef, rc *resultChunk[Out]) error {
	data, err := encode(rc)
	if err == nil && len(data) > int(h.w.nc.MaxPayload())-1024 {
		err = fmt.Errorf("%w: encodes to %d bytes, max payload %d", ErrTooLarge, len(data), h.w.nc.MaxPayload())
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errUnsendable, err)
	}
	m := nats.NewMsg(h.w.n.resultSubject(ref.pool))
	m.Data = data
	ref.setHeader(m.Header)
	pctx, cancel := context.WithTimeout(ctx, h.w.opts.AckWait)
	defer cancel()
	_, err = publish(pctx, h.w.js, m, ref.id("r"), nil)
	return err
}

// heartbeat tells the server every period that m is still being worked on,
// until the function returned is called.
func heartbeat(m jetstream.Msg, period time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.InProgress()
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
