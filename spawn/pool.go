package spawn

import (
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/shm"
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
// committed. Everything else (pending, w.out, jobs) is guarded by Pool.mu;
// submitters put their chunks on task queues themselves, under mu, so Go
// costs no goroutine hand-off on the way out.
//
// When a worker dies, the item its in-flight record names (if any) fails
// with a *WorkerError; every other unreported item it held goes back to the
// front of pending, to run on another worker: an item that had run but
// whose result the worker had not yet sent runs again (items are at least
// once, except the one that killed its worker, which never runs again). A
// fresh worker replaces the dead one unless the pool is stopping, or is
// closed with nothing left to do. Workers that exit by themselves before
// reporting ready (their initializer done; see the wire protocol) are start
// failures; maxStartFails in a row break the pool (Python's pool would
// respawn them forever). A worker killed by a signal (SIGKILL from an
// operator or the OOM killer) is not a start failure, and a ready worker
// that dies, even idle, is simply replaced.

const (
	maxOutstanding = 2       // chunks at a worker at once
	taskQueueSize  = 1 << 20 // per worker; messages up to a quarter of it
	resultQSize    = 4 << 20 // shared; messages up to 1 MiB
	maxAutoChunk   = 1 << 16 // items
	maxStartFails  = 3
	stderrTail     = 4 << 10
)

// Task is a function registered with [RegisterTask] to run in a [Pool]'s
// worker processes. A Task is made once, at package level, and is safe for
// concurrent use; the zero Task is not usable.
type Task[In, Out any] struct {
	e *entry
}

// RegisterTask registers fn under name, which must be unique in the
// program (among [Register] names too), and returns it as a Task to give to
// [NewPool]. Like [Register], call it at package level, never after [Main].
// In and Out must be encodable with encoding/gob.
//
// In a worker, fn runs with a background context, one item at a time. An
// error it returns, or a panic, fails that item only (as a [*TaskError]);
// the worker goes on.
func RegisterTask[In, Out any](name string, fn func(ctx context.Context, x In) (Out, error)) *Task[In, Out] {
	t := &Task[In, Out]{e: workerEntry(name, fn)}
	register(t.e)
	return t
}

// Name returns the name t was registered under.
func (t *Task[In, Out]) Name() string { return t.e.name }

// Initializer is a registered function and its argument, run once in each
// worker before its first task: Python's Pool(initializer=f, initargs=a).
// Make one with [Init].
type Initializer struct {
	e      *entry
	encode func(*gob.Encoder) error
}

// Init returns fn with arg as a pool initializer. arg is sent to every
// worker the pool starts, replacements included; it may hold ipckit shared
// objects. If fn returns an error the worker exits; see [ErrBroken].
func Init[A any](fn *Func[A], arg A) *Initializer {
	return &Initializer{e: fn.e, encode: func(enc *gob.Encoder) error {
		return enc.Encode(wireArg[A]{V: arg})
	}}
}

// PoolOptions configures a [Pool]. A nil *PoolOptions means the defaults.
type PoolOptions struct {
	// Workers is the number of worker processes (default runtime.NumCPU()).
	Workers int
	// ChunkSize is the number of items [Pool.Map] and the Imap calls send
	// to a worker at once. 0 means automatic, as in Python:
	// ceil(len/(4*Workers)), at most 65536 items. A chunk whose encoding
	// is too large for the task queue is split, and so is a chunk of
	// results; but one item's input must encode (gob) in at most 256 KiB,
	// and one item's result in at most 1 MiB: a larger one fails that item
	// with a [*TaskError].
	ChunkSize int
	// Initializer, if set, runs once in each worker before its first task.
	Initializer *Initializer
	// MaxTasksPerWorker, if positive, retires a worker after it has run
	// that many items (a replacement takes over): Python's
	// maxtasksperchild. Chunks are then at most this size.
	MaxTasksPerWorker int
	// Spin is the queues' spin budget before sleeping on a futex (see
	// ipcqueue.Options.Spin): 0 means ipcqueue.DefaultSpin, negative
	// never spin.
	Spin time.Duration
	// Stdout and Stderr receive the workers' output; nil means the
	// parent's os.Stdout and os.Stderr. Each worker's stderr is also kept
	// (its last 4 KiB) for [WorkerError.Stderr].
	Stdout, Stderr io.Writer
}

// Pool is a pool of worker processes running one [Task]: Python's
// multiprocessing.Pool. Its methods are safe for concurrent use; a Pool
// must not be copied. Make one with [NewPool]; end it with [Pool.Close]
// (finish the work, then the workers exit) or [Pool.Terminate] (kill them
// now), then [Pool.Wait].
type Pool[In, Out any] struct {
	_       noCopy
	task    *Task[In, Out]
	opts    PoolOptions
	results *ipcqueue.Queue

	ctx        context.Context // workers are started with it; Terminate cancels it
	cancel     context.CancelFunc
	parent     context.Context // NewPool's: its end terminates the pool
	stopParent func() bool
	readCtx    context.Context
	readCancel context.CancelFunc
	readerDone chan struct{}
	allGone    chan struct{}
	cleanup    sync.Once
	// bg counts the goroutines that may still use the result queue or a
	// worker's handles after the reader is done (watch, replace, the
	// fallback watchers of readerFailed): Wait waits for them before it
	// releases the queue.
	bg sync.WaitGroup
	// fault, if set (tests only), is called at named points; it is copied
	// from poolFault when the pool is made.
	fault func(point string)

	mu         sync.Mutex
	workers    map[uint64]*worker[In, Out]
	starting   int
	pending    []*chunk[In, Out]
	jobs       map[*job[In, Out]]struct{}
	serial     uint64
	chunkID    uint64
	closed     bool
	terminated bool
	stopping   bool  // no more workers: terminated or broken
	broken     error // why the pool broke
	startFails int
	reports    uint64 // results received, to order workers by recency
	gone       bool   // allGone closed
	readerDead bool
}

// worker is the parent's view of one worker process. Fields after proc are
// guarded by Pool.mu.
type worker[In, Out any] struct {
	serial uint64
	proc   *Process
	tasks  *ipcqueue.Queue
	rec    *shm.Int64
	tail   *tailBuffer
	enc    streamEnc

	out        []*chunk[In, Out] // sent, not fully reported, oldest first
	killed     bool              // killed by the pool: blame no item
	drained    bool              // task queue closed: the worker exits when done
	stuck      bool              // a put failed: send nothing more
	ready      bool              // its initializer succeeded (msgReady)
	lastReport uint64            // Pool.reports when it last reported
}

// chunk is items lo .. lo+n-1 of a job; got of them are reported.
type chunk[In, Out any] struct {
	id     uint64
	job    *job[In, Out]
	lo, n  int
	got    int
	worker *worker[In, Out]
}

// NewPool starts a pool of worker processes for task. Cancelling ctx
// terminates the pool (as [Pool.Terminate]). It fails if [Main] has not been
// called or a worker cannot be started.
func NewPool[In, Out any](ctx context.Context, task *Task[In, Out], opts *PoolOptions) (*Pool[In, Out], error) {
	if task == nil || task.e == nil {
		return nil, errors.New("spawn: NewPool with a nil Task")
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
		task:       task,
		readerDone: make(chan struct{}),
		allGone:    make(chan struct{}),
		workers:    map[uint64]*worker[In, Out]{},
		jobs:       map[*job[In, Out]]struct{}{},
	}
	if opts != nil {
		p.opts = *opts
	}
	p.fault = poolFault
	if p.opts.Workers <= 0 {
		p.opts.Workers = runtime.NumCPU()
	}
	if p.opts.Stdout == nil {
		p.opts.Stdout = os.Stdout
	}
	if p.opts.Stderr == nil {
		p.opts.Stderr = os.Stderr
	}
	var err error
	p.results, err = ipcqueue.New(resultQSize, &ipcqueue.Options{MaxMsg: 1 << 20, Spin: p.opts.Spin})
	if err != nil {
		return nil, fmt.Errorf("spawn: pool result queue: %w", err)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.readCtx, p.readCancel = context.WithCancel(context.Background())
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
			p.cancel()
			p.readCancel()
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
	p.parent = ctx
	p.stopParent = context.AfterFunc(ctx, p.Terminate)
	return p, nil
}

// checkTypes refuses In and Out that gob rejects whatever their value:
// every item would fail.
func checkTypes[In, Out any]() error {
	if err := gob.NewEncoder(io.Discard).Encode(&taskMsg[In]{}); err != nil {
		return fmt.Errorf("%w: input %v: %w", ErrType, reflect.TypeFor[In](), err)
	}
	if err := gob.NewEncoder(io.Discard).Encode(&resultMsg[Out]{}); err != nil {
		return fmt.Errorf("%w: output %v: %w", ErrType, reflect.TypeFor[Out](), err)
	}
	return nil
}

// startWorker starts a worker process with the given serial.
func (p *Pool[In, Out]) startWorker(serial uint64) (*worker[In, Out], error) {
	tasks, err := ipcqueue.New(taskQueueSize, &ipcqueue.Options{Spin: p.opts.Spin})
	if err != nil {
		return nil, fmt.Errorf("spawn: pool task queue: %w", err)
	}
	rec, err := shm.NewInt64()
	if err != nil {
		tasks.Close()
		return nil, fmt.Errorf("spawn: pool worker record: %w", err)
	}
	w := &worker[In, Out]{serial: serial, tasks: tasks, rec: rec, tail: new(tailBuffer)}
	s := workerSetup{
		Tasks: tasks, Results: p.results, Rec: rec, Serial: serial,
		MaxTasks: p.opts.MaxTasksPerWorker, Spin: int64(p.opts.Spin),
	}
	init := p.opts.Initializer
	if init != nil {
		s.Init, s.InitTyp = init.e.name, init.e.typ
	}
	w.proc, err = start(p.ctx, p.task.e, func(enc *gob.Encoder) error {
		if err := enc.Encode(&s); err != nil {
			return err
		}
		if init != nil {
			return init.encode(enc)
		}
		return nil
	}, []Option{Stdout(p.opts.Stdout), Stderr(&teeTail{user: p.opts.Stderr, tail: w.tail})})
	if err != nil {
		w.release()
		return nil, err
	}
	return w, nil
}

// release frees the parent's handles of the worker's queue and record.
func (w *worker[In, Out]) release() {
	w.tasks.Shutdown()
	w.tasks.Close()
	w.rec.Close()
}

// replace starts a replacement worker; p.starting was raised for it.
func (p *Pool[In, Out]) replace() {
	p.mu.Lock()
	p.serial++
	serial := p.serial
	p.mu.Unlock()
	w, err := p.startWorker(serial)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starting--
	if err != nil {
		if !p.stopping {
			p.breakPool(fmt.Errorf("%w: %w", ErrBroken, err))
		}
		p.maybeFinish()
		return
	}
	p.workers[serial] = w
	p.goBG(func() { p.watch(w) })
	if p.stopping {
		w.killed = true
		w.proc.Kill()
		return
	}
	p.dispatch()
	p.maybeDrain()
}

// watch posts w's exit on the result queue, behind its results.
func (p *Pool[In, Out]) watch(w *worker[In, Out]) {
	<-w.proc.Done()
	p.mu.Lock()
	dead := p.readerDead
	p.mu.Unlock()
	if dead {
		return // the reader's fallback handles it
	}
	msg := binary.LittleEndian.AppendUint64(nil, w.serial)
	err := p.results.Put(context.Background(), append(msg, msgDead))
	if p.fault != nil {
		p.fault("watch-posted")
	}
	if err != nil {
		p.mu.Lock()
		if p.workers[w.serial] == w {
			p.onDeath(w)
		}
		p.mu.Unlock()
	}
}

// read is the reader goroutine: results and deaths, in queue order.
func (p *Pool[In, Out]) read() {
	defer close(p.readerDone)
	decs := map[uint64]*streamDec{}
	buf := make([]byte, 4<<10)
	for {
		msg, err := getInto(p.readCtx, p.results, &buf)
		if err != nil {
			if p.readCtx.Err() != nil {
				return
			}
			p.readerFailed(err)
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
	p.readerDead = true
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

// goBG runs f on a goroutine that Wait waits for.
func (p *Pool[In, Out]) goBG(f func()) {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		f()
	}()
}

// poolFault is copied into every new pool's fault hook (tests only).
var poolFault func(point string)

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
				te := &TaskError{Task: c.lo + pos, Pid: w.proc.Pid, Msg: e.Msg, Panic: e.Panic, Stack: e.Stack}
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
		if r := w.rec.Load(); recChunk(r) == uint32(c.id) && recPos(r)-1 >= c.got && recPos(r)-1 < c.n {
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
	if werr != nil && !w.killed && !w.ready && blame < 0 && !p.stopping && signalOf(werr) == nil {
		p.startFails++
		if p.startFails >= maxStartFails {
			p.breakPool(fmt.Errorf("%w: %w", ErrBroken, newWorkerError(w, werr, -1)))
		}
	}
	if !p.stopping && (!p.closed || p.busy()) && len(p.workers)+p.starting < p.opts.Workers {
		p.starting++
		p.goBG(p.replace)
	}
	p.dispatch()
	p.maybeDrain()
	p.maybeFinish()
}

func newWorkerError[In, Out any](w *worker[In, Out], werr error, task int) *WorkerError {
	return &WorkerError{Task: task, Pid: w.proc.Pid, ExitCode: w.proc.ExitCode(), Stderr: w.tail.String(),
		Err: werr, Signal: signalOf(werr)}
}

// signalOf returns the signal that killed a process, from its Wait error,
// or nil if it exited by itself.
func signalOf(werr error) os.Signal {
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
	}
	return nil
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
// worker (a chunk of a call that ended, cancelled or abandoned, does not
// count: maybeDrain kills the workers that hold only such chunks). Under
// mu.
func (p *Pool[In, Out]) busy() bool {
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
	items, nils := withoutNils(c.job.in[c.lo : c.lo+c.n])
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

// maybeDrain closes the task queues once the pool is closed and idle, so
// that the workers exit; a worker that still holds chunks of calls that
// ended (an Imap broken out of, say) is killed rather than left to run
// them, perhaps forever. Under mu.
func (p *Pool[In, Out]) maybeDrain() {
	if !p.closed || p.busy() {
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

// maybeFinish ends the reader once the pool is closed or terminated and
// every worker is gone. Under mu.
func (p *Pool[In, Out]) maybeFinish() {
	if p.gone || !(p.closed || p.terminated) || len(p.workers) > 0 || p.starting > 0 {
		return
	}
	p.gone = true
	close(p.allGone)
	p.readCancel()
}

// breakPool fails every job with err and kills every worker. Under mu.
func (p *Pool[In, Out]) breakPool(err error) {
	if p.broken == nil {
		p.broken = err
	}
	p.stopAll(err)
}

// stopAll aborts every job with err and kills every worker. Under mu.
func (p *Pool[In, Out]) stopAll(err error) {
	p.stopping = true
	for j := range p.jobs {
		p.abort(j, err)
	}
	p.pending = nil
	for _, w := range p.workers {
		w.killed = true
		w.proc.Kill()
	}
	p.cancel()
}

// Close stops the pool from accepting work; the workers exit once the work
// already submitted is done. Python's Pool.close. It is safe to call more
// than once.
func (p *Pool[In, Out]) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.maybeDrain()
	p.maybeFinish()
	return nil
}

// Terminate kills the workers now; every unfinished call returns
// [ErrTerminated]. Python's Pool.terminate. It is safe to call more than
// once.
func (p *Pool[In, Out]) Terminate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminated {
		return
	}
	p.terminated = true
	p.stopAll(ErrTerminated)
	p.maybeFinish()
}

// Wait waits until every worker has exited and been reaped, after
// [Pool.Close] or [Pool.Terminate] or the end of NewPool's ctx (else it returns [ErrNotClosed] at
// once), and releases the pool's queues. It returns the error that broke
// the pool, if one did. Wait may be called any number of times.
func (p *Pool[In, Out]) Wait() error {
	if p.parent.Err() != nil {
		p.Terminate() // the AfterFunc may not have run yet
	}
	p.mu.Lock()
	ok := p.closed || p.terminated
	p.mu.Unlock()
	if !ok {
		return ErrNotClosed
	}
	<-p.allGone
	<-p.readerDone
	// The reader has handled every death, but a watcher may still be
	// inside Put after committing its message (the reader saw it), and
	// unmapping the queue under it would fault.
	p.bg.Wait()
	p.cleanup.Do(func() {
		p.stopParent()
		p.cancel()
		p.results.Shutdown()
		p.results.Close()
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.broken
}

// Pids returns the process IDs of the live workers, in no order.
func (p *Pool[In, Out]) Pids() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	pids := make([]int, 0, len(p.workers))
	for _, w := range p.workers {
		pids = append(pids, w.proc.Pid)
	}
	return pids
}

// teeTail copies a worker's stderr to the user's writer and to its tail
// buffer. The tail always gets everything; after the user's writer fails
// once it is no longer written to, and its error is not reported (it would
// stop the copying, and the tail with it).
type teeTail struct {
	user   io.Writer
	tail   *tailBuffer
	failed bool // written by the one copying goroutine only
}

func (t *teeTail) Write(b []byte) (int, error) {
	t.tail.Write(b)
	if !t.failed {
		if n, err := t.user.Write(b); err != nil || n != len(b) {
			t.failed = true
		}
	}
	return len(b), nil
}

// tailBuffer keeps the last stderrTail bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(b)
	if len(b) >= stderrTail {
		b = b[len(b)-stderrTail:]
	}
	if over := len(t.buf) + len(b) - stderrTail; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, b...)
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// noCopy makes go vet's copylocks check report copies.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
