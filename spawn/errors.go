package spawn

import (
	"errors"
	"fmt"
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
// returned a non-nil error. Only the error's text crosses the process
// boundary.
type ChildError struct {
	Name string // the registered function's name
	Pid  int    // the child's process ID
	Msg  string // the text of the error the function returned
}

func (e *ChildError) Error() string {
	return fmt.Sprintf("spawn: %s (pid %d): %s", e.Name, e.Pid, e.Msg)
}

// PanicError is returned by [Process.Wait] when the child's function
// panicked. Error does not include the stack; Stack does.
type PanicError struct {
	Name  string // the registered function's name
	Pid   int    // the child's process ID
	Value string // the panic value, formatted with fmt.Sprint
	Stack string // the panicking goroutine's stack, as runtime/debug.Stack prints it
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("spawn: %s (pid %d) panicked: %s", e.Name, e.Pid, e.Value)
}
