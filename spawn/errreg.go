package spawn

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
)

// Errors across the process boundary
//
// An error a child returns is a value in the child's memory: only its text
// crosses to the parent, so errors.Is(err, ErrSomething) cannot match the
// parent's own ErrSomething by identity. Registered errors fix that. Each
// side registers the same values at package level (the child runs the same
// initialisers), under a key: their text. On the way out, the child lists
// the keys of the registered errors that the error matches (errors.Is, so
// through any wrapping); on the way in, the parent's error (a [*TaskError]
// or a [*ChildError]) unwraps to its own registered values for those keys.
// So errors.Is matches sentinels; errors.As does not rebuild the child's
// error types (a *os.PathError arrives as text, but matches
// os.ErrNotExist, which is registered).
//
// The exported functions are the whole mechanism, so that other
// transports (ipckit's cluster) carry errors the same way: ErrorKeys on
// the sending side, RegisteredErrors on the receiving side.

var errReg = struct {
	sync.Mutex
	keys []string           // in registration order
	errs map[string][]error // key -> the registered values with that text
}{errs: map[string][]error{}}

func init() {
	for _, err := range []error{
		context.Canceled, context.DeadlineExceeded,
		io.EOF, io.ErrUnexpectedEOF,
		os.ErrInvalid, os.ErrPermission, os.ErrExist, os.ErrNotExist, os.ErrClosed,
		os.ErrDeadlineExceeded, os.ErrProcessDone, errors.ErrUnsupported,
	} {
		RegisterError(err)
	}
}

// RegisterError registers err, a sentinel error value, so that a task's or
// a child's error that matches it (errors.Is) matches it in the parent
// too, and returns err:
//
//	var ErrNoInput = spawn.RegisterError(errors.New("digest: no input"))
//
// Call it at package level, as [Register], so that parent and children
// know the same errors. The key is err's text. Registering the same value
// twice is harmless. Two different values with the same text (two
// packages that each define errors.New("not found"), say) share the key:
// an error that matches either matches both in the parent, since the text
// is all that crosses. Give sentinels a package prefix, as Go's do, to
// keep them apart. The standard sentinels context.Canceled,
// context.DeadlineExceeded, io.EOF, io.ErrUnexpectedEOF, os.ErrInvalid,
// os.ErrPermission, os.ErrExist, os.ErrNotExist, os.ErrClosed,
// os.ErrDeadlineExceeded, os.ErrProcessDone and errors.ErrUnsupported are
// registered already.
func RegisterError(err error) error {
	if err == nil {
		panic("spawn: RegisterError(nil)")
	}
	key := err.Error()
	errReg.Lock()
	defer errReg.Unlock()
	olds, ok := errReg.errs[key]
	if !ok {
		errReg.keys = append(errReg.keys, key)
	}
	for _, old := range olds {
		if old == err {
			return err
		}
	}
	errReg.errs[key] = append(olds, err)
	return err
}

// ErrorKeys returns the keys of the registered errors that err matches
// (errors.Is), each once, in registration order, or nil: what travels with
// err's text to another process. See [RegisterError].
func ErrorKeys(err error) []string {
	if err == nil {
		return nil
	}
	errReg.Lock()
	defer errReg.Unlock()
	var keys []string
	for _, k := range errReg.keys {
		for _, e := range errReg.errs[k] {
			if errors.Is(err, e) {
				keys = append(keys, k)
				break
			}
		}
	}
	return keys
}

// RegisteredErrors returns this process's registered errors for keys
// (from [ErrorKeys] in another process): every value registered under
// each key, skipping keys it does not know. An error type that carries
// keys returns these from its Unwrap() []error, as [TaskError] and
// [ChildError] do.
func RegisteredErrors(keys []string) []error {
	if len(keys) == 0 {
		return nil
	}
	errReg.Lock()
	defer errReg.Unlock()
	errs := make([]error, 0, len(keys))
	for _, k := range keys {
		errs = append(errs, errReg.errs[k]...)
	}
	return errs
}
