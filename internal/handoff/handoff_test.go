package handoff

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"sync"
	"testing"
)

// handle is the tests' handle type: it passes its file.
type handle struct{ f *os.File }

// box[T] is a family of handle types claimed by one resolver, as
// ipcqueue.Typed[T] is: each passes the files of the handle it holds.
type box[T any] struct{ h *handle }

func (b *box[T]) inner() *handle { return b.h }

func init() {
	boxed := reflect.TypeFor[interface{ inner() *handle }]()
	Register(
		For(func(h *handle) []*os.File { return []*os.File{h.f} }),
		func(t reflect.Type) func(any) []*os.File {
			if t.Kind() != reflect.Struct || !reflect.PointerTo(t).Implements(boxed) {
				return nil
			}
			return func(p any) []*os.File { return Files(p.(interface{ inner() *handle }).inner()) }
		},
	)
}

func openFiles(t *testing.T, n int) []*os.File {
	t.Helper()
	fs := make([]*os.File, n)
	for i := range fs {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		fs[i] = f
	}
	return fs
}

type (
	inner    struct{ H *handle }
	Embedded struct{ E *handle }
	arg      struct {
		S       inner
		L       []*handle
		A       [2]*handle
		M       map[string]*handle
		K       map[*handle]int
		P       **handle
		I       any
		V       any // a handle by value, in an interface
		B       *box[int]
		Twice   *handle
		Same    *handle // another handle of a file already met
		private *handle // unexported: gob does not send it, nor the walk
		Embedded
		Bytes []byte
		Nil   *handle
		NilI  any
		NilM  map[string]*handle
	}
)

// TestFiles: the walk finds a handle in a struct, a slice, an array, a map
// value and key, a pointer, an interface, an embedded struct and a family
// member; each file once, in the order met; never in an unexported field.
func TestFiles(t *testing.T) {
	f := openFiles(t, 12)
	h := make([]*handle, len(f))
	for i := range h {
		h[i] = &handle{f[i]}
	}
	p := h[6]
	a := arg{
		S:        inner{h[0]},
		L:        []*handle{h[1], nil, h[2]},
		A:        [2]*handle{h[3]},
		M:        map[string]*handle{"x": h[4]},
		K:        map[*handle]int{h[5]: 1},
		P:        &p,
		I:        h[7],
		V:        handle{f[8]},
		B:        &box[int]{h[9]},
		Twice:    h[0],
		Same:     &handle{f[1]},
		private:  h[11],
		Embedded: Embedded{h[10]},
		Bytes:    make([]byte, 1<<20),
	}
	got := Files(a)
	if !slices.Equal(got, f[:11]) {
		t.Fatalf("Files = %v, want %v", got, f[:11])
	}
	if got := Files(&a, a, []any{&a}); !slices.Equal(got, f[:11]) {
		t.Fatalf("Files of the argument three times = %d files, want %d", len(got), 11)
	}
	if got := Files(nil, 1, "s", (*handle)(nil), []byte("x")); len(got) != 0 {
		t.Fatalf("Files of values without handles = %v", got)
	}
}

type (
	node struct {
		Next *node
		U    holder
		H    *handle
	}
	holder struct{ X *node }
)

// TestFilesCycles: cyclic values end, and a type met again while its own
// answer is being worked out (holder inside node) still leads to handles.
func TestFilesCycles(t *testing.T) {
	f := openFiles(t, 3)
	a := &node{H: &handle{f[0]}}
	b := &node{H: &handle{f[1]}, Next: a}
	a.Next = b
	a.U.X = &node{H: &handle{f[2]}}
	// In field order: a.Next (b: its H), a.U (its node's H), a.H.
	if got, want := Files(a), []*os.File{f[1], f[2], f[0]}; !slices.Equal(got, want) {
		t.Fatalf("Files of a cycle = %v, want %v", got, want)
	}
	// A holder walked on its own, after node taught the walk about it.
	if got := Files(holder{X: &node{H: &handle{f[2]}}}); !slices.Equal(got, f[2:]) {
		t.Fatalf("Files(holder) = %v", got)
	}
	s := make([]any, 2)
	s[0], s[1] = s, &handle{f[0]}
	m := map[string]any{}
	m["self"], m["h"] = m, &handle{f[1]}
	if got := Files(s, m); !slices.Equal(got, f[:2]) {
		t.Fatalf("Files of a self-holding slice and map = %v", got)
	}
}

func TestCollectID(t *testing.T) {
	f := openFiles(t, 2)
	if _, err := ID(f[0]); !errors.Is(err, ErrNoTransport) {
		t.Fatalf("ID outside Collect = %v, want ErrNoTransport", err)
	}
	files, ids, release := Collect([]*handle{{f[0]}, {f[1]}, {f[0]}})
	if !slices.Equal(files, f) || len(ids) != 2 || ids[0] != int(f[0].Fd()) || ids[1] != int(f[1].Fd()) {
		t.Fatalf("Collect = %v, %v", files, ids)
	}
	if id, err := ID(f[1]); err != nil || id != ids[1] {
		t.Fatalf("ID while passed = %d, %v; want %d", id, err, ids[1])
	}
	// Another goroutine's encoding is accepted too while the file is
	// passed: the race window the package doc describes.
	done := make(chan error)
	go func() { _, err := ID(f[0]); done <- err }()
	if err := <-done; err != nil {
		t.Fatalf("ID from another goroutine = %v", err)
	}
	// Two spawns pass f[0]: it stays passed until both release.
	_, _, release2 := Collect(&handle{f[0]})
	release()
	release() // twice is fine
	if _, err := ID(f[0]); err != nil {
		t.Fatalf("ID after one of two releases = %v", err)
	}
	if _, err := ID(f[1]); !errors.Is(err, ErrNoTransport) {
		t.Fatalf("ID after release = %v, want ErrNoTransport", err)
	}
	release2()
	if _, err := ID(f[0]); !errors.Is(err, ErrNoTransport) {
		t.Fatalf("ID after both releases = %v, want ErrNoTransport", err)
	}
}

func TestCollectClosed(t *testing.T) {
	f := openFiles(t, 2)
	f[0].Close()
	files, ids, release := Collect([]*handle{{f[0]}, {f[1]}})
	defer release()
	if !slices.Equal(files, f[1:]) || len(ids) != 1 {
		t.Fatalf("Collect with a closed file = %v, %v; want only the open one", files, ids)
	}
	_, _, release2 := Collect(&handle{f[1]})
	defer release2()
	f[1].Close()
	if _, err := ID(f[1]); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("ID of a passed file closed meanwhile = %v, want os.ErrClosed", err)
	}
}

// TestCollectConcurrent: concurrent spawns collect at once (no lock is
// held across an encoding), each getting its own files.
func TestCollectConcurrent(t *testing.T) {
	f := openFiles(t, 8)
	var wg sync.WaitGroup
	for i := range f {
		wg.Go(func() {
			for range 100 {
				files, _, release := Collect(&handle{f[i]}, &handle{f[(i+1)%len(f)]})
				if len(files) != 2 || files[0] != f[i] {
					t.Errorf("Collect = %v", files)
				}
				if _, err := ID(f[i]); err != nil {
					t.Error(err)
				}
				release()
			}
		})
	}
	wg.Wait()
	for _, g := range f {
		if _, err := ID(g); !errors.Is(err, ErrNoTransport) {
			t.Fatalf("a file is still passed after every release: %v", err)
		}
	}
}

func TestInherited(t *testing.T) {
	SetInherited([]int{7, 42}, []*os.File{os.Stdin, os.Stdout})
	defer SetInherited(nil, nil)
	if f, err := File(42); err != nil || f != os.Stdout {
		t.Fatalf("File(42) = %v, %v", f, err)
	}
	for _, id := range []int{-1, 0, 3, 8} {
		if _, err := File(id); !errors.Is(err, ErrNoFile) {
			t.Errorf("File(%d) = %v, want ErrNoFile", id, err)
		}
	}
}
