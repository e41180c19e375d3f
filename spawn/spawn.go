package spawn

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/shm"
)

// Options configures a child started by [Start] or [Run]. A nil *Options
// means the defaults: the null device for stdin, the parent's stdout,
// stderr, environment and working directory.
//
// Start reads the Options and keeps only the writers and the reader: the
// struct may be reused or changed once Start returns. The zero Options is
// the defaults.
type Options struct {
	// Stdin is the child's standard input; nil means the null device. A
	// reader that is not an *os.File is copied by a goroutine, as in
	// os/exec.
	Stdin io.Reader

	// Stdout is the child's standard output; nil means the parent's
	// os.Stdout at the time of Start, and io.Discard the null device. A
	// writer that is not an *os.File is fed by a goroutine, as in
	// os/exec: Wait waits for the child and anything it started to close
	// their copies of it, but at most one second after the child exits.
	// Then Wait stops copying (output written later by a grandchild is
	// lost) and returns the child's own result: nil if its function
	// returned nil and it exited with code 0, whatever its grandchildren
	// still hold.
	Stdout io.Writer

	// Stderr is the child's standard error, as Stdout is its output; nil
	// means the parent's os.Stderr at the time of Start.
	Stderr io.Writer

	// Env is the child's environment ("KEY=value" entries), replacing the
	// parent's; nil means the parent's, as in os/exec (an empty, non-nil
	// slice means none).
	Env []string

	// Dir is the child's working directory; "" means the parent's.
	Dir string

	// Name is the child's name ([Process.Name]; in the child,
	// [CurrentProcess]): Python's Process(name=...). "" means
	// "Process-N", N counting this process's children from 1.
	Name string

	// TermGrace is how long a child sent SIGTERM ([Process.Terminate])
	// waits, once its function's ctx is cancelled, for the function to
	// return before it dies of the signal anyway (a Python child dies at
	// once): 0 means one second; negative means no limit (the function
	// decides, as with signal.NotifyContext).
	TermGrace time.Duration

	prefix string // of the default name; "" means "Process"
}

// output returns what os/exec is given for a child's stdout or stderr: w,
// the parent's file for nil, and nil (the null device) for io.Discard.
func output(w io.Writer, parent *os.File) io.Writer {
	switch w {
	case nil:
		return parent
	case io.Discard:
		return nil
	}
	return w
}

// Process is a running or finished child started by [Start]. Its methods
// are safe for concurrent use; a Process must not be copied (use the
// pointer Start returns). The zero Process is not usable.
type Process struct {
	// Pid is the child's process ID.
	Pid int

	name  string // the registered function's
	pname string // the process's: Options.Name or "Process-N"
	cmd   *exec.Cmd
	done  chan struct{}
	err   error        // set before done is closed
	code  atomic.Int64 // exit code, -1 until reaped

	// killSent is set when ctx's end sent the child SIGKILL (which may
	// have come too late to matter: see reap).
	killSent atomic.Bool
}

// Start starts fn in a child process with arg and returns at once. The
// caller should call [Process.Wait]; the child is reaped even if it does
// not. Cancelling ctx kills the child (but after Start returns, it does not
// undo the start). Start fails if arg cannot be encoded, if [Main] has not
// been called, or if the process cannot be started. opts may be nil.
func Start[A any](ctx context.Context, fn *Func[A], arg A, opts *Options) (*Process, error) {
	if fn == nil || fn.e == nil {
		return nil, fmt.Errorf("spawn: Start with a nil Func: %w", os.ErrInvalid)
	}
	return start(ctx, fn.e, []any{wireArg[A]{V: arg}}, opts, nil)
}

// Run starts fn in a child process with arg and waits for it; it returns
// what [Process.Wait] returns. opts may be nil.
func Run[A any](ctx context.Context, fn *Func[A], arg A, opts *Options) error {
	p, err := Start(ctx, fn, arg, opts)
	if err != nil {
		return err
	}
	return p.Wait()
}

// hooks are test hooks (bbolt's db.ops style): each is called, if set, at
// one point of a child's or a pool's life, so that a test can hold a
// window open. Production code never sets them; a nil *hooks is none.
type hooks struct {
	// afterCtxKill runs once ctx's end has tried to kill a child (sent
	// says whether the kill was sent), before the record in killSent: the
	// window in which the child may already be dead and reaped. Once it
	// has run, reap waits for the record before it judges the death.
	afterCtxKill func(sent bool)
	// poolFault is called at named points of a pool ("watch-posted": a
	// watcher has put a worker's death on the result queue; "result": the
	// reader has taken a worker's result off the queue and not yet
	// applied it).
	poolFault func(point string)
	// workerHold, if set, is given to the pool's workers, which hold at
	// the point it names until the test releases them: see
	// workerSetup.hold.
	workerHold *shm.Int64Array
}

func (h *hooks) afterKill(sent bool) {
	if h != nil && h.afterCtxKill != nil {
		h.afterCtxKill(sent)
	}
}

func (h *hooks) fault(point string) {
	if h != nil && h.poolFault != nil {
		h.poolFault(point)
	}
}

// start starts the registry entry e in a child; args are encoded after the
// type name, in order (a Func's wireArg; a pool worker's setup, then its
// initializer's wireArg). It is the one door through which every child is
// started, so that other entry points (the pool's workers) get the same
// argument transport, status reporting, death signal and reaping.
func start(ctx context.Context, e *entry, args []any, opts *Options, h *hooks) (*Process, error) {
	if !mainCalled.Load() {
		return nil, ErrNoMain
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &Options{}
	}

	if e.argErr != nil {
		return nil, fmt.Errorf("spawn: argument of %s: %w", e.name, e.argErr)
	}
	prefix := opts.prefix
	if prefix == "" {
		prefix = "Process"
	}
	info := nextChild(prefix)
	if opts.Name != "" {
		info.Name = opts.Name
	}
	info.Grace = opts.TermGrace
	if info.Grace == 0 {
		info.Grace = defaultTermGrace
	}
	// The files of the anonymous shared objects in args become descriptors
	// 3, 4, ... in the child; while they are marked as being passed, the
	// objects' GobEncode writes the identifiers the child maps back.
	files, ids, release := handoff.Collect(args...)
	var buf bytes.Buffer
	err := encodeArgs(&buf, info, e.typ, args)
	release()
	if err != nil {
		return nil, fmt.Errorf("spawn: encode argument of %s: %w", e.name, err)
	}

	argR, argW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		argR.Close()
		argW.Close()
		return nil, fmt.Errorf("spawn: %w", err)
	}
	cmd := &exec.Cmd{
		Path:       selfExe,
		Args:       []string{os.Args[0]},
		Env:        childEnv(opts.Env, ids, e.name),
		Dir:        opts.Dir,
		Stdin:      opts.Stdin,
		Stdout:     output(opts.Stdout, os.Stdout),
		Stderr:     output(opts.Stderr, os.Stderr),
		ExtraFiles: append(files, argR, statW),
		// A grandchild that keeps a non-*os.File stdout or stderr open must
		// not hold Wait forever.
		WaitDelay: time.Second,
	}
	err = startCmd(cmd)
	argR.Close()
	statW.Close()
	if err != nil {
		argW.Close()
		statR.Close()
		return nil, fmt.Errorf("spawn: start %s: %w", e.name, err)
	}
	p := &Process{Pid: cmd.Process.Pid, name: e.name, pname: info.Name, cmd: cmd, done: make(chan struct{})}
	p.code.Store(-1)
	addActive(p)
	// stopKill ends ctx's hold on the child once it has exited, and then
	// waits for a kill already under way to say whether it was sent: reap
	// must not judge the death before killSent is settled.
	stopKill := func() {}
	if ctx.Done() != nil {
		killed := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(killed)
			sent := cmd.Process.Kill() == nil
			h.afterKill(sent)
			if sent {
				p.killSent.Store(true)
			}
		})
		stopKill = func() {
			if !stop() {
				<-killed
			}
		}
	}
	go p.reap(ctx, stopKill, buf.Bytes(), argW, statR)
	return p, nil
}

// encodeArgs writes the child's argument stream: its identity, the type
// name, then args.
func encodeArgs(buf *bytes.Buffer, info procInfo, typ string, args []any) error {
	enc := gob.NewEncoder(buf)
	if err := enc.Encode(info); err != nil {
		return err
	}
	if err := enc.Encode(typ); err != nil {
		return err
	}
	for _, a := range args {
		if err := enc.Encode(a); err != nil {
			return err
		}
	}
	return nil
}

// reap feeds the child its argument, reads its status, waits for it, and
// records the result. It runs on its own goroutine for every child.
func (p *Process) reap(ctx context.Context, stopKill func(), arg []byte, argW, statR *os.File) {
	// A write error (EPIPE) means the child died or never read; its exit
	// state or status says why.
	argW.Write(arg)
	argW.Close()
	// The status pipe reaches EOF when the child exits (it is close-on-exec
	// in the child, so nothing it starts inherits it).
	raw, rerr := io.ReadAll(io.LimitReader(statR, maxStatus))
	statR.Close()
	werr := p.cmd.Wait()
	stopKill()
	released()

	ps := p.cmd.ProcessState
	// Wait gives up on the stdout and stderr copies one WaitDelay after
	// the child exits (a grandchild holds them open) and then returns
	// ErrWaitDelay, but only for a child that exited with code 0: what the
	// child itself did is known, so report that.
	if ps != nil && ps.Success() && errors.Is(werr, exec.ErrWaitDelay) {
		werr = nil
	}
	// The child was killed for ctx only if the kill was sent and the child
	// died of it: a child that exited on its own before ctx ended (while
	// Wait still drained its output, say) reports its own result.
	killed := false
	if p.killSent.Load() && ps != nil {
		ws, ok := ps.Sys().(syscall.WaitStatus)
		killed = ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	}

	st, ok, perr := parseStatus(raw)
	var err error
	switch {
	case perr != nil:
		err = errors.Join(perr, werr)
	case ok:
		err = p.statusError(st)
	case rerr != nil:
		err = errors.Join(fmt.Errorf("spawn: read status: %w", rerr), werr)
	default:
		err = werr
	}
	if err != nil && killed {
		err = fmt.Errorf("spawn: %s (pid %d) killed: %w: %w", p.name, p.Pid, context.Cause(ctx), err)
	}
	if ps != nil {
		p.code.Store(int64(ps.ExitCode()))
	}
	p.err = err
	removeActive(p)
	close(p.done)
}

func (p *Process) statusError(st status) error {
	switch st.kind {
	case statusError:
		return &ChildError{Name: p.name, Pid: p.Pid, Msg: st.msg, Matches: unpackKeys(st.keys)}
	case statusPanic:
		return &PanicError{Name: p.name, Pid: p.Pid, Value: st.msg, Stack: st.stack}
	case statusUnregistered:
		return fmt.Errorf("spawn: %q: %w", p.name, ErrUnregistered)
	case statusMismatch:
		return fmt.Errorf("spawn: %q: %w: %s", p.name, ErrMismatch, st.msg)
	default: // statusArgument
		return fmt.Errorf("spawn: %q: %w: %s", p.name, ErrArgument, st.msg)
	}
}

// Wait waits for the child to exit and returns nil if its function returned
// nil; otherwise a [*ChildError], a [*PanicError], an [*exec.ExitError], or,
// if the end of Start's ctx killed the child, an error wrapping ctx's error
// (a child that had exited on its own by then reports its own result). A
// child that could not run the function reports an error wrapping
// [ErrUnregistered], [ErrMismatch], [ErrArgument] or [ErrStatus]. Wait may
// be called any number of times, from any goroutine; every call returns the
// same error.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// WaitContext is [Process.Wait] with a deadline: Python's join(timeout).
// If ctx ends before the child has exited, it returns ctx.Err() and the
// child runs on (call WaitContext or Wait again, or [Process.Terminate] or
// [Process.Kill] it); a child that has exited wins over a ctx that ended
// at the same time.
func (p *Process) WaitContext(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done returns a channel that is closed when the child has exited and been
// reaped; [Process.Wait] then returns at once.
func (p *Process) Done() <-chan struct{} { return p.done }

// Name returns the child's name: [Options.Name], or "Process-N" (see
// [CurrentProcess]). Python's Process.name.
func (p *Process) Name() string { return p.pname }

// IsAlive reports whether the child is running: it has not yet been
// reaped (for a moment after it exits, IsAlive may still report true;
// after Wait or Done, never). Python's is_alive().
func (p *Process) IsAlive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExitCode returns the child's exit code: the code it exited with (0 when
// its function returned nil, 1 for an error, 2 for a panic, 3 when it
// could not run the function), or -1 if it has not exited yet or was
// killed by a signal. Python's exitcode is the same, except that a child
// killed by signal N has exitcode -N there; here ExitCode is -1 and
// Wait's [*exec.ExitError] tells the signal:
//
//	var ee *exec.ExitError
//	if errors.As(err, &ee) {
//		ws := ee.Sys().(syscall.WaitStatus)
//		if ws.Signaled() { ... ws.Signal() ... } // Python's -exitcode
//	}
func (p *Process) ExitCode() int { return int(p.code.Load()) }

// Kill kills the child with SIGKILL. After the child has exited it returns
// os.ErrProcessDone.
func (p *Process) Kill() error { return p.cmd.Process.Kill() }

// Terminate sends the child SIGTERM: Python's terminate(). In the child,
// this cancels the ctx its function runs with (the cause is
// [ErrTerminated]); the function should return, within
// [Options.TermGrace] (one second by default), after which the child dies
// of the signal anyway. If it returns an error
// matching context.Canceled (ctx.Err(), wrapped or not), the child ends
// by SIGTERM, so Wait returns an [*exec.ExitError] for signal SIGTERM, as
// for a child that never looked at ctx; if it returns nil, the child
// exits with code 0 (it shut down cleanly) and any other error is a
// [*ChildError]. A second SIGTERM ends a child that is still running at
// once; [Process.Kill] always does. Before the child's function has started
// (while it decodes its argument), SIGTERM ends it at once. After the
// child has exited it returns os.ErrProcessDone.
func (p *Process) Terminate() error { return p.cmd.Process.Signal(syscall.SIGTERM) }

// Signal sends sig to the child. After the child has exited it returns
// os.ErrProcessDone.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// childEnv returns the child's environment: env, or the parent's if env is
// nil, without any stale spawn variable, plus the variable naming the
// parent, the parent's descriptor numbers of the inherited files and the
// function.
func childEnv(env []string, ids []int, name string) []string {
	base := env
	if base == nil {
		base = os.Environ()
	}
	out := make([]string, 0, len(base)+2)
	gorace := ""
	for _, kv := range base {
		switch {
		case strings.HasPrefix(kv, envVar+"="):
		case raceEnabled && strings.HasPrefix(kv, "GORACE="):
			gorace = kv
		default:
			out = append(out, kv)
		}
	}
	if raceEnabled {
		// Unless the user set it, skip the race runtime's one-second sleep
		// before a successful exit.
		if !strings.Contains(gorace, "atexit_sleep_ms") {
			gorace = strings.TrimSpace(strings.TrimPrefix(gorace, "GORACE=") + " atexit_sleep_ms=0")
			gorace = "GORACE=" + gorace
		}
		out = append(out, gorace)
	}
	fds := make([]string, len(ids))
	for i, id := range ids {
		fds[i] = strconv.Itoa(id)
	}
	return append(out, envVar+"="+strconv.Itoa(os.Getpid())+":"+strings.Join(fds, ",")+":"+name)
}
