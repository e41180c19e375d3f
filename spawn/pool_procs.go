package spawn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/shm"
)

// Worker processes, from the parent's side: starting one, watching for its
// exit, replacing it.

// worker is the parent's view of one worker process. Fields after enc are
// guarded by Pool.mu.
type worker[In, Out any] struct {
	serial uint64
	proc   *Process
	tasks  *ipcqueue.Queue
	ctl    *shm.Int64Array // the in-flight record and the cancel slots (see the wire protocol)
	tail   *tailBuffer
	enc    streamEnc

	out        []*chunk[In, Out] // sent, not fully reported, oldest first
	killed     bool              // killed by the pool: blame no item
	drained    bool              // task queue shut down: the worker exits when done
	stuck      bool              // a put failed: send nothing more
	ready      bool              // its initializer succeeded (msgReady)
	lastReport uint64            // Pool.reports when it last reported
}

// startWorker starts a worker process with the given serial.
func (p *Pool[In, Out]) startWorker(serial uint64) (*worker[In, Out], error) {
	tasks, err := ipcqueue.New(taskQueueSize, nil)
	if err != nil {
		return nil, fmt.Errorf("spawn: pool task queue: %w", err)
	}
	tasks.SetSpin(p.opts.Spin)
	ctl, err := shm.NewArray[int64](ctlLen)
	if err != nil {
		tasks.Close()
		return nil, fmt.Errorf("spawn: pool worker record: %w", err)
	}
	w := &worker[In, Out]{serial: serial, tasks: tasks, ctl: ctl, tail: new(tailBuffer)}
	s := &workerSetup{
		Tasks: tasks, Results: p.results, Ctl: ctl, Serial: serial,
		MaxTasks: p.opts.MaxTasksPerWorker, Spin: int64(p.opts.Spin),
	}
	if p.hooks != nil {
		s.Hold = p.hooks.workerHold
	}
	args := []any{s}
	if init := p.opts.Initializer; init != nil {
		s.Init, s.InitTyp = init.e.name, init.e.typ
		args = append(args, init.arg)
	}
	stderr := &teeTail{user: output(p.opts.Stderr, os.Stderr), tail: w.tail}
	w.proc, err = start(context.Background(), p.task.e, args, &Options{Stdout: p.opts.Stdout, Stderr: stderr, prefix: "PoolWorker"}, p.hooks)
	if err != nil {
		w.release()
		return nil, err
	}
	return w, nil
}

// release frees the parent's handles of the worker's queue and control
// array.
func (w *worker[In, Out]) release() {
	w.tasks.Shutdown()
	w.tasks.Close()
	w.ctl.Close()
}

// cancel tells w that call j is cancelled, and kills it if it is running
// one of j's items: the parent's side of the handshake described in the
// wire protocol. It writes the IDs of j's chunks that w holds into free
// cancel slots first, and only then reads the in-flight record. Under mu.
func (w *worker[In, Out]) cancel(j *job[In, Out]) {
	if w.killed {
		return
	}
	mine := false
	for _, c := range w.out {
		if c.job != j {
			continue
		}
		k := w.freeSlot()
		if k < 0 { // impossible: w holds at most maxOutstanding chunks
			w.killed = true
			w.proc.Kill()
			return
		}
		w.ctl.Store(ctlCancel+k, int64(c.id))
		mine = true
	}
	if !mine {
		return
	}
	r := w.ctl.Load(ctlRec)
	if recPos(r) == 0 {
		return // between items, or in none: it will see the slot
	}
	for _, c := range w.out {
		if c.job == j && recChunk(r) == uint32(c.id) {
			w.killed = true
			w.proc.Kill()
			return
		}
	}
}

// freeSlot returns a cancel slot that names no chunk w holds, or -1.
// Under mu.
func (w *worker[In, Out]) freeSlot() int {
	for k := range maxOutstanding {
		id := uint64(w.ctl.Load(ctlCancel + k))
		if id == 0 || !slices.ContainsFunc(w.out, func(c *chunk[In, Out]) bool { return c.id == id }) {
			return k
		}
	}
	return -1
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
		p.breakPool(fmt.Errorf("%w: %w", ErrBroken, err))
		p.maybeFinish()
		return
	}
	p.workers[serial] = w
	p.goBG(func() { p.watch(w) })
	if p.stopping() {
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
	dead := p.life.readerDead
	p.mu.Unlock()
	if dead {
		return // the reader's fallback handles it
	}
	msg := binary.LittleEndian.AppendUint64(nil, w.serial)
	err := p.results.Put(context.Background(), append(msg, msgDead))
	p.hooks.fault("watch-posted")
	if err != nil {
		p.mu.Lock()
		if p.workers[w.serial] == w {
			p.onDeath(w)
		}
		p.mu.Unlock()
	}
}

// goBG runs f on a goroutine that the pool waits for before it releases
// the result queue.
func (p *Pool[In, Out]) goBG(f func()) {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		f()
	}()
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
