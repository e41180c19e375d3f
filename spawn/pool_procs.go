package spawn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
	rec    *shm.Int64
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
	rec, err := shm.NewInt64()
	if err != nil {
		tasks.Close()
		return nil, fmt.Errorf("spawn: pool worker record: %w", err)
	}
	w := &worker[In, Out]{serial: serial, tasks: tasks, rec: rec, tail: new(tailBuffer)}
	s := &workerSetup{
		Tasks: tasks, Results: p.results, Rec: rec, Serial: serial,
		MaxTasks: p.opts.MaxTasksPerWorker, Spin: int64(p.opts.Spin),
	}
	args := []any{s}
	if init := p.opts.Initializer; init != nil {
		s.Init, s.InitTyp = init.e.name, init.e.typ
		args = append(args, init.arg)
	}
	stderr := &teeTail{user: output(p.opts.Stderr, os.Stderr), tail: w.tail}
	w.proc, err = start(context.Background(), p.task.e, args, &Options{Stdout: p.opts.Stdout, Stderr: stderr}, p.hooks)
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
