package spawn

import (
	"context"
	"encoding/gob"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"sync"
	"time"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/ipcqueue"
)

// Pool design
//
// The parent keeps all the bookkeeping; workers only run chunks. Each worker
// has its own task queue, so the parent always knows which chunks sit at
// which worker (w.out, oldest first: the worker runs them in that order),
// and holds at most maxOutstanding of them, so that an idle worker is fed
// from the parent's pending list rather than a busy worker's queue. All
// workers put their results on one shared result queue, read by one reader
// goroutine in the parent; a worker's exit is posted on the same queue by
// the goroutine that watches it (see the wire protocol in pool_worker.go),
// so the reader handles a death only after every result the worker
// committed. Everything else (pending, w.out, jobs, the pool's state) is
// guarded by Pool.mu; submitters put their chunks on task queues
// themselves, under mu, so Go costs no goroutine hand-off on the way out.
//
// When a worker dies, the item its in-flight record names (if any) fails
// with a *WorkerError; every other unreported item it held goes back to the
// front of pending, to run on another worker: an item that had run but
// whose result the worker had not yet sent runs again (items are at least
// once, except the one that killed its worker, which never runs again). A
// fresh worker replaces the dead one while the pool is open, or shutting
// down with work left. Workers that exit by themselves before reporting
// ready (their initializer done; see the wire protocol) are start
// failures; maxStartFails in a row break the pool (Python's pool would
// respawn them forever). A worker killed by a signal (SIGKILL from an
// operator or the OOM killer) is not a start failure, and a ready worker
// that dies, even idle, is simply replaced.
//
// The files: pool.go (the public types and the lifecycle verbs),
// pool_state.go (the state machine), pool_call.go (the calls: Map, Imap,
// Go, ...), pool_sched.go (chunks to workers), pool_events.go (results and
// deaths, from the reader), pool_procs.go (starting, watching and
// replacing worker processes), pool_tail.go (the tail of a worker's
// stderr), pool_worker.go (the wire protocol and the worker's own loop).

const (
	maxOutstanding = 2       // chunks at a worker at once
	taskQueueSize  = 1 << 20 // per worker; messages up to a quarter of it
	resultQSize    = 4 << 20 // shared; messages up to 1 MiB
	maxAutoChunk   = 1 << 16 // items
	maxStartFails  = 3
)

// Task is a function registered with [RegisterTask] to run in a [Pool]'s
// worker processes. A Task is made once, at package level, and is safe for
// concurrent use; it is used through its pointer (copying a Task copies
// the reference to its registration, which is harmless). The zero Task is
// not usable.
type Task[In, Out any] struct {
	e *entry
}

// RegisterTask registers fn under name, which must be unique in the
// program (among [Register] names too), and returns it as a Task to give to
// [NewPool]. Like [Register], call it at package level, never after [Main].
// In and Out must be encodable with encoding/gob.
//
// In a worker, fn runs with a background context, one item at a time
// (a pool worker sent SIGTERM dies of it, as Python's pool workers do). An
// error it returns, or a panic, fails that item only (as a [*TaskError],
// which matches the errors registered with [RegisterError] that the error
// matched); the worker goes on. In and Out must be able to cross: NewPool
// refuses a type with a channel or func field, naming it.
func RegisterTask[In, Out any](name string, fn func(ctx context.Context, x In) (Out, error)) *Task[In, Out] {
	t := &Task[In, Out]{e: workerEntry(name, fn)}
	register(t.e)
	return t
}

// Name returns the name t was registered under.
func (t *Task[In, Out]) Name() string { return t.e.name }

// Initializer is a registered function and its argument, run once in each
// worker before its first task: Python's Pool(initializer=f, initargs=a).
// Make one with [Init]; the zero Initializer is not usable. It is
// immutable, so safe for concurrent use and for use by several pools; it
// is used through its pointer.
type Initializer struct {
	e   *entry
	arg any // wireArg[A]
}

// Init returns fn with arg as a pool initializer. arg is sent to every
// worker the pool starts, replacements included; it may hold ipckit shared
// objects. If fn returns an error the worker exits; see [ErrBroken].
func Init[A any](fn *Func[A], arg A) *Initializer {
	return &Initializer{e: fn.e, arg: wireArg[A]{V: arg}}
}

// PoolOptions configures a [Pool]. A nil *PoolOptions means the defaults,
// and so does the zero value of each field. NewPool copies the struct: it
// may be reused or changed once NewPool returns.
type PoolOptions struct {
	// Workers is the number of worker processes: 0 means
	// runtime.NumCPU(); negative is an error.
	Workers int
	// ChunkSize is the number of items every call of the pool that takes
	// many sends to a worker at once; [Pool.Chunked] sets it for some
	// calls. 0 means Python's defaults: ceil(len/(4*Workers)) items (at
	// most 65536) for [Pool.Map] and [Pool.MapAsync], and 1 for
	// [Pool.Imap] and [Pool.ImapUnordered] (whose input's length is not
	// known); negative is an error. A chunk whose encoding is too large for
	// the task queue is split, and so is a chunk of results; but one item's
	// input must encode (gob) in at most 256 KiB, and one item's result in
	// at most 1 MiB: a larger one fails that item with a [*TaskError].
	ChunkSize int
	// Initializer, if set, runs once in each worker before its first task.
	Initializer *Initializer
	// MaxTasksPerWorker, if positive, retires a worker after it has run
	// that many items (a replacement takes over): Python's
	// maxtasksperchild. Chunks are then at most this size. Negative is an
	// error.
	MaxTasksPerWorker int
	// Spin is the queues' spin budget before sleeping on a futex, in the
	// parent and in every worker (see ipcqueue.Queue.SetSpin): 0 means
	// ipcqueue.DefaultSpin, negative never spin.
	Spin time.Duration
	// Stdout and Stderr receive the workers' output; nil means the
	// parent's os.Stdout and os.Stderr, and io.Discard the null device
	// (see [Options.Stdout]). Each worker's stderr is also kept (its last
	// 4 KiB) for [WorkerError.Stderr].
	Stdout, Stderr io.Writer
}

// Pool is a pool of worker processes running one [Task]: Python's
// multiprocessing.Pool. Make one with [NewPool]; the zero Pool is not
// usable. Its methods are safe for concurrent use; a Pool must not be
// copied (go vet catches copies).
//
// A pool ends in one of two ways. [Pool.Shutdown] is Python's close()
// and join(): no new work, the work already submitted finishes, the
// workers exit. [Pool.Close] is Python's terminate(), and what a with
// block does on exit: the workers are killed now and every unfinished
// call fails. Close also releases the pool's queues, so call it in any
// case, deferred, as with any handle:
//
//	p, err := spawn.NewPool(ctx, task, nil)
//	if err != nil {
//		return err
//	}
//	defer p.Close() // on every return: the workers go, and the queues
//	futures := ...  // p.Go(ctx, x) for each x
//	return p.Shutdown(ctx) // their work finishes, then the workers exit
type Pool[In, Out any] struct {
	_       noCopy
	task    *Task[In, Out]
	opts    PoolOptions
	results *ipcqueue.Queue
	hooks   *hooks // tests only; nil in production

	parent     context.Context // NewPool's: its end closes the pool
	stopParent func() bool     // unhooks the pool from parent; set under mu
	allGone    chan struct{}   // closed (under mu) when every worker is gone for good
	stopped    chan struct{}   // closed by the reader after allGone, once it and bg are done
	// bg counts the goroutines that may still use the result queue or a
	// worker's handles after the reader is done (watch, replace, the
	// fallback watchers of readerFailed, the result queue's shutdown that
	// ends the reader): the reader waits for them before it closes
	// stopped, and only then may the queue be released.
	bg         sync.WaitGroup
	releaseOne sync.Once

	mu         sync.Mutex
	life       lifecycle // the pool's state; see pool_state.go
	workers    map[uint64]*worker[In, Out]
	starting   int // replacements being started
	pending    []*chunk[In, Out]
	jobs       map[*job[In, Out]]struct{}
	serial     uint64
	chunkID    uint64
	startFails int
	reports    uint64 // results received, to order workers by recency
}

// NewPool starts a pool of worker processes for task. opts may be nil.
// The end of ctx closes the pool, as [Pool.Close] does (its calls then
// fail with an error that matches both os.ErrClosed and ctx's error). It
// fails if [Main] has not been called or a worker cannot be started.
func NewPool[In, Out any](ctx context.Context, task *Task[In, Out], opts *PoolOptions) (*Pool[In, Out], error) {
	return newPool(ctx, task, opts, nil)
}

// newPool is NewPool with test hooks.
func newPool[In, Out any](ctx context.Context, task *Task[In, Out], opts *PoolOptions, h *hooks) (*Pool[In, Out], error) {
	if task == nil || task.e == nil {
		return nil, fmt.Errorf("spawn: NewPool with a nil Task: %w", os.ErrInvalid)
	}
	if !mainCalled.Load() {
		return nil, ErrNoMain
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkTypes[In, Out](); err != nil {
		return nil, err
	}
	p := &Pool[In, Out]{
		task:    task,
		hooks:   h,
		parent:  ctx,
		allGone: make(chan struct{}),
		stopped: make(chan struct{}),
		workers: map[uint64]*worker[In, Out]{},
		jobs:    map[*job[In, Out]]struct{}{},
	}
	if opts != nil {
		p.opts = *opts
	}
	if err := p.opts.check(); err != nil {
		return nil, err
	}
	if init := p.opts.Initializer; init != nil && init.e.argErr != nil {
		return nil, fmt.Errorf("spawn: initializer %s: %w", init.e.name, init.e.argErr)
	}
	if p.opts.Workers == 0 {
		p.opts.Workers = runtime.NumCPU()
	}
	if p.opts.Stdout == nil {
		p.opts.Stdout = os.Stdout
	}
	if p.opts.Stderr == nil {
		p.opts.Stderr = os.Stderr
	}
	var err error
	p.results, err = ipcqueue.New(resultQSize, &ipcqueue.Options{MaxMsg: 1 << 20})
	if err != nil {
		return nil, fmt.Errorf("spawn: pool result queue: %w", err)
	}
	p.results.SetSpin(p.opts.Spin)
	var ws []*worker[In, Out]
	for range p.opts.Workers {
		p.serial++
		w, err := p.startWorker(p.serial)
		if err != nil {
			for _, w := range ws {
				w.proc.Kill()
				<-w.proc.Done()
				w.release()
			}
			p.results.Shutdown()
			p.results.Close()
			return nil, err
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		p.workers[w.serial] = w
		p.goBG(func() { p.watch(w) })
	}
	go p.read()
	p.mu.Lock()
	p.stopParent = context.AfterFunc(ctx, func() { p.close(closedError{cause: context.Cause(ctx)}) })
	p.mu.Unlock()
	return p, nil
}

// check refuses negative counts.
func (o *PoolOptions) check() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"Workers", o.Workers}, {"ChunkSize", o.ChunkSize}, {"MaxTasksPerWorker", o.MaxTasksPerWorker}} {
		if f.v < 0 {
			return fmt.Errorf("spawn: NewPool with %s %d: %w", f.name, f.v, os.ErrInvalid)
		}
	}
	return nil
}

// checkTypes refuses In and Out that gob rejects whatever their value:
// every item would fail.
func checkTypes[In, Out any]() error {
	if err := handoff.CheckType(reflect.TypeFor[In]()); err != nil {
		return fmt.Errorf("%w: input: %w", ErrType, err)
	}
	if err := handoff.CheckType(reflect.TypeFor[Out]()); err != nil {
		return fmt.Errorf("%w: output: %w", ErrType, err)
	}
	if err := gob.NewEncoder(io.Discard).Encode(&taskMsg[In]{}); err != nil {
		return fmt.Errorf("%w: input %v: %w", ErrType, reflect.TypeFor[In](), err)
	}
	if err := gob.NewEncoder(io.Discard).Encode(&resultMsg[Out]{}); err != nil {
		return fmt.Errorf("%w: output %v: %w", ErrType, reflect.TypeFor[Out](), err)
	}
	return nil
}

// Shutdown stops the pool from taking work, at once (later calls fail
// with [ErrShutdown]), lets the work already submitted finish, and waits
// for the workers to exit: Python's Pool.close() and Pool.join() in one.
// If ctx ends first, Shutdown returns ctx.Err() and the pool goes on
// draining; call Shutdown again to wait more, or [Pool.Close] to stop it.
//
// Shutdown returns nil once the workers have exited after finishing the
// work; the error that broke the pool if one did (see [ErrBroken]); and an
// error matching os.ErrClosed if the pool was closed (by Close or the end
// of NewPool's ctx) before the work was done. Once it has returned nil,
// the pool holds no process and no queue, and Close has nothing left to
// do. Shutdown is safe to call more than once and concurrently.
func (p *Pool[In, Out]) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.checkParent()
	p.setState(poolShuttingDown, nil)
	p.mu.Unlock()
	select {
	case <-p.stopped:
	default:
		select {
		case <-p.stopped:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.release()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.life.end
}

// Close releases the pool: it kills the workers now (Python's
// Pool.terminate(), and what a with block does on exit), fails every
// unfinished call with an error matching os.ErrClosed, waits for the
// workers to be reaped (SIGKILL makes that prompt), and frees the pool's
// queues. Later calls fail with an error matching os.ErrClosed. Close
// returns the error that broke the pool, if one did (see [ErrBroken]),
// else nil. It is safe to call more than once and concurrently; after a
// Shutdown that returned nil it has nothing left to do.
func (p *Pool[In, Out]) Close() error { return p.close(errPoolClosed) }

// close moves the pool to closed with why, waits for it to stop and
// releases it.
func (p *Pool[In, Out]) close(why error) error {
	p.mu.Lock()
	p.setState(poolClosed, why)
	p.mu.Unlock()
	<-p.stopped
	p.release()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.life.broken
}

// release frees what the pool holds once it has stopped: its hold on
// NewPool's ctx and its result queue (each worker's queues go at its
// death). Only after stopped is closed: nothing uses the queue then.
func (p *Pool[In, Out]) release() {
	p.releaseOne.Do(func() {
		p.mu.Lock()
		stop := p.stopParent
		p.mu.Unlock()
		stop()
		p.results.Shutdown()
		p.results.Close()
	})
}

// Pids returns the process IDs of the live workers, in no order, in a new
// slice that is the caller's.
func (p *Pool[In, Out]) Pids() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	pids := make([]int, 0, len(p.workers))
	for _, w := range p.workers {
		pids = append(pids, w.proc.Pid)
	}
	return pids
}

// closedError is what the calls of a closed pool fail with: it matches
// os.ErrClosed, and wraps the cause when the end of NewPool's ctx closed
// the pool.
type closedError struct{ cause error }

// errPoolClosed is the error of a pool that Close closed.
var errPoolClosed error = closedError{}

func (e closedError) Error() string {
	if e.cause != nil {
		return "spawn: pool is closed: its context ended: " + e.cause.Error()
	}
	return "spawn: pool is closed"
}

func (e closedError) Is(target error) bool { return target == os.ErrClosed }

func (e closedError) Unwrap() error { return e.cause }

// noCopy makes go vet's copylocks check report copies.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
