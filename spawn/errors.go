package spawn

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/ipckit/ipckit/internal/sentinel"
)

var (
	// ErrUnregistered means the child knows no function by the name asked for.
	ErrUnregistered = errors.New("spawn: no function registered under this name in the child")
	// ErrMismatch means the child's function under that name takes another argument type.
	ErrMismatch = errors.New("spawn: argument type does not match the child's registered function")
	// ErrNoMain means Start was called in a program that has not called Main.
	ErrNoMain = errors.New("spawn: spawn.Main was not called at the start of main (or TestMain)")
	// ErrArgument means the child could not decode its argument.
	ErrArgument = errors.New("spawn: child could not decode its argument")
	// ErrStatus means the child's status report was malformed.
	ErrStatus = errors.New("spawn: malformed status from child")
)

// ChildError is returned by [Process.Wait] when the child's function
// returned a non-nil error. The error's text crosses the process boundary,
// and so does its identity as far as registered errors go: errors.Is
// matches every error registered with [RegisterError] that the child's
// error matched (context.Canceled, os.ErrNotExist, your own sentinels).
// Like the package's other error types, it is plain data: it may be copied
// and read from any goroutine; its zero value describes no child.
type ChildError struct {
	Name    string   // the registered function's name
	Pid     int      // the child's process ID
	Msg     string   // the text of the error the function returned
	Matches []string // keys of the registered errors it matched (see ErrorKeys)
}

func (e *ChildError) Error() string {
	return fmt.Sprintf("spawn: %s (pid %d): %s", e.Name, e.Pid, e.Msg)
}

// Unwrap returns the registered errors the child's error matched.
func (e *ChildError) Unwrap() []error { return RegisteredErrors(e.Matches) }

// PanicError is returned by [Process.Wait] when the child's function
// panicked. Error does not include the stack; Stack does. It is plain data,
// like [ChildError].
type PanicError struct {
	Name  string // the registered function's name
	Pid   int    // the child's process ID
	Value string // the panic value, formatted with fmt.Sprint
	Stack string // the panicking goroutine's stack, as runtime/debug.Stack prints it
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("spawn: %s (pid %d) panicked: %s", e.Name, e.Pid, e.Value)
}

// Pool errors. A call on a pool that is closed (or closing) fails with an
// error matching os.ErrClosed.
var (
	// ErrShutdown means work was submitted to a pool after
	// [Pool.Shutdown]. It is the same value as ipcqueue.ErrShutdown.
	ErrShutdown = sentinel.ErrShutdown
	// ErrBroken means the pool gave up: its workers kept dying before
	// running anything (a failing initializer, say), a worker could not be
	// started, or its result queue failed. Every call then returns it.
	ErrBroken = errors.New("spawn: pool broken")
	// ErrType means [NewPool] was given a Task whose input or output type
	// encoding/gob cannot encode at all (a channel or func, a struct with
	// no exported fields, ...).
	ErrType = errors.New("spawn: task type cannot be encoded with encoding/gob")
)

// TaskError is one item's failure in a [Pool]: the task returned an error
// or panicked. The worker went on. The error's text crosses the process
// boundary, and its identity as far as registered errors go: errors.Is
// matches every error registered with [RegisterError] that the task's
// error (or a panic value that is an error) matched. It is plain data,
// like [ChildError].
type TaskError struct {
	Task    int      // the item's index in the call's input (0 for Go and Apply)
	Pid     int      // the worker's process ID (0 if the item never reached one)
	Msg     string   // the error's text, or the panic value formatted with fmt.Sprint
	Panic   bool     // the task panicked
	Stack   string   // the panicking goroutine's stack (panics only)
	Matches []string // keys of the registered errors it matched (see ErrorKeys)
}

// Unwrap returns the registered errors the task's error matched.
func (e *TaskError) Unwrap() []error { return RegisteredErrors(e.Matches) }

func (e *TaskError) Error() string {
	if e.Panic {
		return fmt.Sprintf("spawn: task %d panicked (pid %d): %s", e.Task, e.Pid, e.Msg)
	}
	return fmt.Sprintf("spawn: task %d (pid %d): %s", e.Task, e.Pid, e.Msg)
}

// WorkerError is one item's failure in a [Pool] because its worker process
// died while running it (a signal such as SIGKILL from the OOM killer, or
// os.Exit). The pool started a fresh worker for the rest. It is plain
// data, like [ChildError].
type WorkerError struct {
	Task     int       // the item's index in the call's input (0 for Go and Apply; -1 for none)
	Pid      int       // the dead worker's process ID
	Signal   os.Signal // the signal that killed it, or nil
	ExitCode int       // its exit code, or -1 if a signal killed it
	Stderr   string    // the last bytes (up to 4 KiB) it wrote to stderr
	Err      error     // what [Process.Wait] returned (often an *exec.ExitError)
}

func (e *WorkerError) Error() string {
	how := fmt.Sprintf("exited with code %d", e.ExitCode)
	if e.Signal != nil {
		how = "killed by signal " + e.Signal.String()
	}
	var ee *exec.ExitError
	if e.Err != nil && !errors.As(e.Err, &ee) {
		how += ": " + e.Err.Error() // the worker reported why (an initializer's error, say)
	}
	if e.Task < 0 {
		return fmt.Sprintf("spawn: pool worker (pid %d) %s", e.Pid, how)
	}
	return fmt.Sprintf("spawn: task %d: pool worker (pid %d) %s", e.Task, e.Pid, how)
}

func (e *WorkerError) Unwrap() error { return e.Err }

// MapError is returned by [Pool.Map] when some items failed; Map's results
// are still returned. Errs holds one error per failed item, in input order.
// It is plain data, like [ChildError]; a copy shares Errs.
type MapError struct {
	Total int     // items in the call
	Errs  []error // *TaskError or *WorkerError, in input order
}

func (e *MapError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "spawn: %d of %d tasks failed", len(e.Errs), e.Total)
	for i, err := range e.Errs {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Errs)-3)
			break
		}
		b.WriteString("; ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the items' errors, for errors.Is and errors.As.
func (e *MapError) Unwrap() []error { return e.Errs }
