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
)

// Option configures a child started by [Start] or [Run].
type Option func(*config)

type config struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            []string
	envSet         bool
	dir            string
}

// Stdin sets the child's standard input; by default (or nil) it reads from
// the null device. A reader that is not an *os.File is copied by a goroutine, as in
// os/exec.
func Stdin(r io.Reader) Option { return func(c *config) { c.stdin = r } }

// Stdout sets the child's standard output; by default it is the parent's
// os.Stdout at the time of Start; nil means the null device. A writer that
// is not an *os.File is fed by a goroutine, as in os/exec: Wait waits for
// the child and anything it started to close their copies of it, but at
// most one second after the child exits. Then Wait stops copying (output
// written later by a grandchild is lost) and returns the child's own
// result: nil if its function returned nil and it exited with code 0,
// whatever its grandchildren still hold.
func Stdout(w io.Writer) Option { return func(c *config) { c.stdout = w } }

// Stderr sets the child's standard error; see [Stdout].
func Stderr(w io.Writer) Option { return func(c *config) { c.stderr = w } }

// Env sets the child's environment ("KEY=value" entries), replacing the
// parent's, which the child inherits by default.
func Env(env []string) Option {
	return func(c *config) { c.env, c.envSet = env, true }
}

// Dir sets the child's working directory; by default it is the parent's.
func Dir(dir string) Option { return func(c *config) { c.dir = dir } }

// Process is a running or finished child started by [Start]. Its methods
// are safe for concurrent use; a Process must not be copied.
type Process struct {
	// Pid is the child's process ID.
	Pid int

	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error        // set before done is closed
	code atomic.Int64 // exit code, -1 until reaped

	// killSent is set when ctx's end sent the child SIGKILL (which may
	// have come too late to matter: see reap).
	killSent atomic.Bool
}

// Start starts fn in a child process with arg and returns at once. The
// caller should call [Process.Wait]; the child is reaped even if it does
// not. Cancelling ctx kills the child (but after Start returns, it does not
// undo the start). Start fails if arg cannot be encoded, if [Main] has not
// been called, or if the process cannot be started.
func Start[A any](ctx context.Context, fn *Func[A], arg A, opts ...Option) (*Process, error) {
	if fn == nil || fn.e == nil {
		return nil, errors.New("spawn: Start with a nil Func")
	}
	return start(ctx, fn.e, func(enc *gob.Encoder) error {
		return enc.Encode(wireArg[A]{V: arg})
	}, opts)
}

// Run starts fn in a child process with arg and waits for it; it returns
// what [Process.Wait] returns.
func Run[A any](ctx context.Context, fn *Func[A], arg A, opts ...Option) error {
	p, err := Start(ctx, fn, arg, opts...)
	if err != nil {
		return err
	}
	return p.Wait()
}

// start starts the registry entry e in a child; encode writes the argument
// after the type name. It is the one door through which every child is
// started, so that other entry points (the pool's workers) get the same
// argument transport, status reporting, death signal and reaping.
func start(ctx context.Context, e *entry, encode func(*gob.Encoder) error, opts []Option) (*Process, error) {
	if !mainCalled.Load() {
		return nil, ErrNoMain
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg := config{stdout: os.Stdout, stderr: os.Stderr}
	for _, o := range opts {
		o(&cfg)
	}

	// Encode inside handoff.Collect: anonymous shared objects met on the way
	// register their files, which become descriptors 3, 4, ... in the child.
	var buf bytes.Buffer
	files, err := handoff.Collect(func() error {
		enc := gob.NewEncoder(&buf)
		if err := enc.Encode(e.typ); err != nil {
			return err
		}
		return encode(enc)
	})
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
		Env:        childEnv(&cfg, len(files), e.name),
		Dir:        cfg.dir,
		Stdin:      cfg.stdin,
		Stdout:     cfg.stdout,
		Stderr:     cfg.stderr,
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
	p := &Process{Pid: cmd.Process.Pid, name: e.name, cmd: cmd, done: make(chan struct{})}
	p.code.Store(-1)
	// stopKill ends ctx's hold on the child once it has exited, and then
	// waits for a kill already under way to say whether it was sent: reap
	// must not judge the death before killSent is settled.
	stopKill := func() {}
	if ctx.Done() != nil {
		killed := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(killed)
			if cmd.Process.Kill() == nil {
				if f := afterCtxKill.Load(); f != nil {
					(*f)()
				}
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

// afterCtxKill, when set (tests only), runs between the kill that ctx's end
// sends and its record in killSent: the window in which the child may
// already be dead and reaped.
var afterCtxKill atomic.Pointer[func()]

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
	close(p.done)
}

func (p *Process) statusError(st status) error {
	switch st.kind {
	case statusError:
		return &ChildError{Name: p.name, Pid: p.Pid, Msg: st.msg}
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

// Done returns a channel that is closed when the child has exited and been
// reaped; [Process.Wait] then returns at once.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode returns the child's exit code, or -1 if it has not exited yet or
// was killed by a signal.
func (p *Process) ExitCode() int { return int(p.code.Load()) }

// Kill kills the child with SIGKILL. After the child has exited it returns
// os.ErrProcessDone.
func (p *Process) Kill() error { return p.cmd.Process.Kill() }

// Signal sends sig to the child. After the child has exited it returns
// os.ErrProcessDone.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// childEnv returns the child's environment: the configured or inherited
// one without any stale spawn variable, plus the variable naming the parent,
// the number of inherited files and the function.
func childEnv(cfg *config, nfiles int, name string) []string {
	base := cfg.env
	if !cfg.envSet {
		base = os.Environ()
	}
	env := make([]string, 0, len(base)+2)
	gorace := ""
	for _, kv := range base {
		switch {
		case strings.HasPrefix(kv, envVar+"="):
		case raceEnabled && strings.HasPrefix(kv, "GORACE="):
			gorace = kv
		default:
			env = append(env, kv)
		}
	}
	if raceEnabled {
		// Unless the user set it, skip the race runtime's one-second sleep
		// before a successful exit.
		if !strings.Contains(gorace, "atexit_sleep_ms") {
			gorace = strings.TrimSpace(strings.TrimPrefix(gorace, "GORACE=") + " atexit_sleep_ms=0")
			gorace = "GORACE=" + gorace
		}
		env = append(env, gorace)
	}
	return append(env, envVar+"="+strconv.Itoa(os.Getpid())+":"+strconv.Itoa(nfiles)+":"+name)
}
