// Package handoff carries the open files of anonymous shared objects (memfds)
// from a parent process to the child that spawn starts, so that they arrive
// in the child attached to the same memory. It is the one place that decides
// which descriptors a child inherits and how a handle names one.
//
// # In the parent
//
// spawn calls [Collect] with the values it is about to encode with
// encoding/gob. Collect walks them with reflect the way gob does: exported
// struct fields, through pointers, slices, arrays, maps (keys and values)
// and interfaces, each pointer, slice and map once, so that a cyclic value
// ends. Every value whose type is a registered handle type ([Register]) is
// asked for the files its encoding passes, and the walk does not look
// inside it. The files, each once (however many handles share one) and in
// the order met, become the child's inherited descriptors (os/exec's
// ExtraFiles). Until spawn calls the release function Collect returns, they
// are marked as being passed, and a handle's GobEncode asks [ID] for the
// identifier to write: the file's descriptor number in the parent.
//
// ID refuses a file that is not being passed, with [ErrNoTransport]: so
// encoding an anonymous object anywhere but in a spawn argument fails with
// a clear error, and so does one that the walk cannot see (a handle in an
// unexported field, encoded by the enclosing type's own GobEncode), instead
// of reaching the child as a descriptor it does not hold.
//
// The one race window: the set of files being passed belongs to the
// process, not to one encoding (gob gives GobEncode no context to tell
// them apart). While a spawn passes an object's file, another goroutine's
// encoding of that same object, outside spawn or hidden from another
// spawn's walk, succeeds instead of failing; the handle it writes names a
// descriptor that only the child being started holds, and decoding it
// anywhere else fails with [ErrNoFile]. Nothing is ever attached to the
// wrong memory: a child maps identifiers only through the table its parent
// sent it.
//
// # In the child
//
// spawn calls [SetInherited] once at start-up with the parent's descriptor
// numbers and the files they arrived as; a handle's GobDecode turns its
// identifier back into the file with [File].
package handoff

import (
	"errors"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"
)

// ErrNoTransport is returned by [ID] for a file that no spawn is passing:
// an anonymous object can reach another process only in the argument of a
// child started by spawn.
var ErrNoTransport = errors.New("handoff: an anonymous shared object can only be passed to a child process started by spawn, " +
	"in an exported field, slice, array, map, pointer or interface of its argument")

// ErrNoFile is returned by [File] for an identifier the parent did not
// pass.
var ErrNoFile = errors.New("handoff: no such inherited descriptor")

// FirstFD is the descriptor number of the first inherited file in a child
// (os/exec's ExtraFiles start after stdin, stdout and stderr).
const FirstFD = 3

// A Resolver tells the walk which types are handles: for a type t it
// returns the function that lists the files a value of type t passes when
// gob encodes it (the function gets a pointer to the value, a *t), or nil
// if t is not one of its handle types. A resolver is asked once per type.
type Resolver func(t reflect.Type) func(p any) []*os.File

// For returns the resolver of the single type T, whose values pass the
// files that files returns.
func For[T any](files func(*T) []*os.File) Resolver {
	want := reflect.TypeFor[T]()
	return func(t reflect.Type) func(any) []*os.File {
		if t != want {
			return nil
		}
		return func(p any) []*os.File { return files(p.(*T)) }
	}
}

// Register adds resolvers of handle types. Each package with handle types
// registers them in an init function, before any walk needs them; the
// first resolver to claim a type decides it.
func Register(rs ...Resolver) {
	regMu.Lock()
	defer regMu.Unlock()
	old := tab.Load()
	next := &table{}
	if old != nil {
		next.resolvers = append(next.resolvers, old.resolvers...)
	}
	next.resolvers = append(next.resolvers, rs...)
	tab.Store(next) // a fresh memo: a type's answer may change
}

var (
	regMu sync.Mutex // serializes Register
	tab   atomic.Pointer[table]
)

// table is the registered resolvers and what the walk has learned of each
// type under them. It is replaced, never changed, by Register.
type table struct {
	resolvers []Resolver
	memo      sync.Map // reflect.Type -> typeInfo
}

// typeInfo is what the walk needs to know of a type.
type typeInfo struct {
	files func(p any) []*os.File // a handle type: its files
	// may is false only if no value of the type can hold a handle (a
	// []byte, a string, a struct of those): the walk skips such values.
	may bool
}

func (tb *table) info(t reflect.Type) typeInfo {
	if i, ok := tb.memo.Load(t); ok {
		return i.(typeInfo)
	}
	tb.learn(t, map[reflect.Type]bool{})
	i, _ := tb.memo.Load(t)
	return i.(typeInfo)
}

// learn works out and memoizes t's typeInfo and that of the types it is
// made of. A type met again while it is being worked out (a recursive
// type) is assumed to hold handles: the answer errs only towards walking.
func (tb *table) learn(t reflect.Type, busy map[reflect.Type]bool) bool {
	if i, ok := tb.memo.Load(t); ok {
		return i.(typeInfo).may
	}
	if busy[t] {
		return true
	}
	busy[t] = true
	defer delete(busy, t)
	var i typeInfo
	for _, r := range tb.resolvers {
		if i.files = r(t); i.files != nil {
			break
		}
	}
	switch {
	case i.files != nil:
		i.may = true
	case t.Kind() == reflect.Interface:
		i.may = true
	case t.Kind() == reflect.Pointer, t.Kind() == reflect.Slice, t.Kind() == reflect.Array:
		i.may = tb.learn(t.Elem(), busy)
	case t.Kind() == reflect.Map:
		i.may = tb.learn(t.Key(), busy) || tb.learn(t.Elem(), busy)
	case t.Kind() == reflect.Struct:
		for k := range t.NumField() {
			if f := t.Field(k); f.IsExported() && tb.learn(f.Type, busy) {
				i.may = true
			}
		}
	}
	tb.memo.Store(t, i)
	return i.may
}

// Files walks vals (see the package doc) and returns the files of the
// handles in them, each once, in the order met. A resolver's function may
// call Files on the handles its type is made of.
func Files(vals ...any) []*os.File {
	w := walker{tab: tab.Load(), seen: map[visit]bool{}, have: map[*os.File]bool{}}
	if w.tab == nil {
		return nil // no handle type registered
	}
	for _, v := range vals {
		if v != nil {
			w.walk(reflect.ValueOf(v))
		}
	}
	return w.files
}

type walker struct {
	tab   *table
	seen  map[visit]bool
	have  map[*os.File]bool
	files []*os.File
}

// visit identifies a pointer, slice or map already walked.
type visit struct {
	p unsafe.Pointer
	t reflect.Type
	n int // a slice's length: a shorter slice of the same array is not the same
}

// first reports whether (p, t, n) is met for the first time.
func (w *walker) first(p unsafe.Pointer, t reflect.Type, n int) bool {
	k := visit{p, t, n}
	if w.seen[k] {
		return false
	}
	w.seen[k] = true
	return true
}

func (w *walker) walk(v reflect.Value) {
	t := v.Type()
	info := w.tab.info(t)
	if !info.may {
		return
	}
	if info.files != nil {
		for _, f := range info.files(pointerTo(v)) {
			if f != nil && !w.have[f] {
				w.have[f] = true
				w.files = append(w.files, f)
			}
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() && w.first(v.UnsafePointer(), t, 0) {
			w.walk(v.Elem())
		}
	case reflect.Interface:
		if !v.IsNil() {
			w.walk(v.Elem())
		}
	case reflect.Struct:
		for k := range t.NumField() {
			if t.Field(k).IsExported() {
				w.walk(v.Field(k))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 || !w.first(v.UnsafePointer(), t, v.Len()) {
			return
		}
		fallthrough
	case reflect.Array:
		for k := range v.Len() {
			w.walk(v.Index(k))
		}
	case reflect.Map:
		if v.Len() == 0 || !w.first(v.UnsafePointer(), t, 0) {
			return
		}
		for it := v.MapRange(); it.Next(); {
			w.walk(it.Key())
			w.walk(it.Value())
		}
	}
}

// pointerTo returns a pointer to v: its address, or that of a copy if v is
// not addressable (a value held in an interface or a map).
func pointerTo(v reflect.Value) any {
	if v.CanAddr() {
		return v.Addr().Interface()
	}
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	return p.Interface()
}

var (
	passMu  sync.Mutex
	passing = map[*os.File]int{} // files being passed, with the number of spawns passing each
)

// Collect walks vals (see the package doc) and returns the files of the
// handles in them, each once and in the order met, with their identifiers
// (the parent's descriptor numbers, for the child's [SetInherited]). The
// files are marked as being passed, so that [ID] accepts them, until
// release is called; release is safe to call more than once. A file closed
// meanwhile is left out (its handle's encoding fails on its own).
func Collect(vals ...any) (files []*os.File, ids []int, release func()) {
	for _, f := range Files(vals...) {
		if fd := f.Fd(); fd != ^uintptr(0) {
			files, ids = append(files, f), append(ids, int(fd))
		}
	}
	passMu.Lock()
	for _, f := range files {
		passing[f]++
	}
	passMu.Unlock()
	return files, ids, sync.OnceFunc(func() {
		passMu.Lock()
		defer passMu.Unlock()
		for _, f := range files {
			if passing[f]--; passing[f] <= 0 {
				delete(passing, f)
			}
		}
	})
}

// ID returns the identifier under which f travels to a child: its
// descriptor number in this process. It fails with [ErrNoTransport] unless
// f is being passed ([Collect]), and with os.ErrClosed if f is closed.
func ID(f *os.File) (int, error) {
	passMu.Lock()
	n := passing[f]
	passMu.Unlock()
	if n == 0 {
		return 0, ErrNoTransport
	}
	fd := f.Fd()
	if fd == ^uintptr(0) {
		return 0, os.ErrClosed
	}
	return int(fd), nil
}

var inherited struct {
	sync.Mutex
	files map[int]*os.File // the parent's descriptor number -> the file in this process
}

// SetInherited records, in a child, the files its parent passed: files[i]
// arrived for the parent's descriptor ids[i]. spawn calls it once at
// start-up, before the argument is decoded.
func SetInherited(ids []int, files []*os.File) {
	m := make(map[int]*os.File, len(files))
	for i, f := range files {
		if i < len(ids) {
			m[ids[i]] = f
		}
	}
	inherited.Lock()
	inherited.files = m
	inherited.Unlock()
}

// File returns the inherited file that the parent passed under identifier
// id. The caller must not close it: several objects may share it.
func File(id int) (*os.File, error) {
	inherited.Lock()
	defer inherited.Unlock()
	f := inherited.files[id]
	if f == nil {
		return nil, ErrNoFile
	}
	return f, nil
}
