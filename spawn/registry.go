package spawn

import (
	"context"
	"encoding/gob"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/ipckit/ipckit/internal/handoff"
)

// Registry
//
// The registry maps a name to an entry: the name of the argument type, and a
// run function that decodes the argument from the child's argument stream
// and calls the user's function. Entries are added only before Main (package
// initialisation), so the parent and every child, which run the same
// initialisers, hold the same table. Func[A] is the typed face of one entry;
// other entry points (the process pool's worker) add entries of their own
// with register.

type entry struct {
	name string
	typ  string // reflect name of the argument type, checked by the child
	run  func(ctx context.Context, dec *gob.Decoder) error
	// argErr says why no argument of the type can cross (a channel
	// field, say): Start fails with it before encoding anything.
	argErr error
	// termCtx: in the child, SIGTERM cancels run's ctx (see
	// Process.Terminate); otherwise SIGTERM keeps its default action
	// (pool workers, which Python's terminate() kills at once too).
	termCtx bool
}

var (
	registryMu sync.Mutex
	registry   = map[string]*entry{}
	mainCalled atomic.Bool
)

// register adds e to the registry. It panics on a duplicate name or when
// called after Main, both programming errors that would otherwise surface
// only in a child.
func register(e *entry) {
	if e.name == "" {
		panic("spawn: Register with an empty name")
	}
	if mainCalled.Load() {
		panic("spawn: Register(" + e.name + ") after spawn.Main: register at package level, so that children know the name too")
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[e.name]; dup {
		panic("spawn: function " + e.name + " registered twice")
	}
	registry[e.name] = e
}

func lookup(name string) *entry {
	registryMu.Lock()
	defer registryMu.Unlock()
	return registry[name]
}

// wireArg wraps the argument so that gob can send any type, a nil pointer
// included (gob refuses a nil pointer at top level but omits a nil field).
type wireArg[A any] struct{ V A }

// Func is a function registered with [Register] to run in a child process;
// pass it to [Start] or [Run]. A Func is made once, at package level, and is
// safe for concurrent use; it is used through its pointer (a copy would
// name the same registration, harmlessly). The zero Func is not usable.
type Func[A any] struct {
	e *entry
}

// Register registers fn under name, which must be unique in the program, and
// returns it as a Func to pass to [Start]. Call it at package level (in a var
// initialiser or init), never after [Main]: the child looks the name up in
// its own copy of the registry, which only package initialisation fills.
// Register panics on a duplicate name or a call after Main.
//
// The argument type A must be encodable with encoding/gob: exported fields,
// no channels or functions. [Start] refuses a type that is not, naming the
// field at fault and its kind (a chan field, which gob would silently
// drop, included). It may hold shm segments and values and the other
// ipckit shared objects.
func Register[A any](name string, fn func(ctx context.Context, arg A) error) *Func[A] {
	f := &Func[A]{}
	f.e = &entry{
		name:    name,
		typ:     reflect.TypeFor[A]().String(),
		argErr:  handoff.CheckType(reflect.TypeFor[A]()),
		termCtx: true,
		run: func(ctx context.Context, dec *gob.Decoder) error {
			var w wireArg[A]
			if err := dec.Decode(&w); err != nil {
				return &argError{err}
			}
			return fn(ctx, w.V)
		},
	}
	register(f.e)
	return f
}

// Name returns the name f was registered under.
func (f *Func[A]) Name() string { return f.e.name }

// argError marks a failure to decode the argument, as opposed to an error
// the user's function returned.
type argError struct{ err error }

func (e *argError) Error() string { return e.err.Error() }
