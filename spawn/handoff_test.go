//go:build linux

package spawn_test

import (
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/semaphore"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// handlesArg holds anonymous objects everywhere gob looks: a struct, a
// slice, a map value, a pointer, an interface, and the same object (or the
// same segment) more than once.
type handlesArg struct {
	S     struct{ V *shm.Int64 }
	L     []*shm.Int64
	M     map[string]*shm.Int64
	P     **shm.Int64
	I     any
	Arr   *shm.Int64Array
	Q     *ipcqueue.Queue
	T     *ipcqueue.Typed[int]
	Mu    *semaphore.Mutex
	Ev    *semaphore.Event
	Again *shm.Int64 // S.V again
	Lo    *shm.Int64 // Lo and Hi share one segment
	Hi    *shm.Int64
	Files int // the descriptors the child should inherit
}

// The interface field I holds a *shm.Int64: gob must know the type.
func init() { gob.Register(new(shm.Int64)) }

var (
	handles = spawn.Register("handoff-handles", func(ctx context.Context, a handlesArg) error {
		if n := inheritedMemfds(); n != a.Files {
			return fmt.Errorf("inherited %d descriptors, want %d (one per segment)", n, a.Files)
		}
		vals := []*shm.Int64{a.S.V, a.L[0], a.L[1], a.M["m"], *a.P, a.I.(*shm.Int64), a.Again, a.Lo, a.Hi}
		for i, v := range vals {
			if v == nil {
				return fmt.Errorf("value %d arrived nil", i)
			}
			v.Add(int64(i + 1))
		}
		a.Arr.Add(1, 5)
		if err := a.Q.Put(ctx, []byte("from the child")); err != nil {
			return err
		}
		if err := a.T.Put(ctx, 42); err != nil {
			return err
		}
		if err := a.Mu.Lock(); err != nil {
			return err
		}
		a.Ev.Set()
		// A decoded handle travels on: the grandchild gets this process's
		// own descriptor of the segment.
		return spawn.Run(ctx, addOne, a.L[0], nil)
	})

	addOne = spawn.Register("handoff-add-one", func(ctx context.Context, v *shm.Int64) error {
		if n := inheritedMemfds(); n != 1 {
			return fmt.Errorf("grandchild inherited %d descriptors, want 1", n)
		}
		v.Add(1000)
		return nil
	})
)

// inheritedMemfds counts the memfds at descriptors 3, 4, ...: the files
// the parent passed, which sit before the argument pipe.
func inheritedMemfds() int {
	n := 0
	for fd := handoff.FirstFD; ; fd++ {
		link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil || !strings.HasPrefix(link, "/memfd:") {
			return n
		}
		n++
	}
}

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func closeAll(t *testing.T, cs ...interface{ Close() error }) {
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
}

// TestHandles: anonymous objects in a struct, a slice, a map value, a
// pointer and an interface arrive in the child attached to the same memory,
// and so do a queue, a typed queue, a mutex and an event; an object passed
// twice, or two values in one segment, pass one descriptor.
func TestHandles(t *testing.T) {
	ints := make([]*shm.Int64, 6)
	for i := range ints {
		ints[i] = must[*shm.Int64](t)(shm.NewInt64())
		closeAll(t, ints[i])
	}
	seg := must[*shm.Segment](t)(shm.CreateAnonymous(16))
	lo := must[*shm.Int64](t)(shm.Int64At(seg, 0))
	hi := must[*shm.Int64](t)(shm.Int64At(seg, 8))
	arr := must[*shm.Int64Array](t)(shm.NewArray[int64](3))
	q := must[*ipcqueue.Queue](t)(ipcqueue.New(4096, nil))
	tq := must[*ipcqueue.Typed[int]](t)(ipcqueue.NewTyped[int](must[*ipcqueue.Queue](t)(ipcqueue.New(4096, nil))))
	mu := must[*semaphore.Mutex](t)(semaphore.NewMutex())
	ev := must[*semaphore.Event](t)(semaphore.NewEvent())
	closeAll(t, seg, arr, q, tq, mu, ev)

	p := ints[4]
	a := handlesArg{
		S:     struct{ V *shm.Int64 }{ints[0]},
		L:     []*shm.Int64{ints[1], ints[2]},
		M:     map[string]*shm.Int64{"m": ints[3]},
		P:     &p,
		I:     ints[5],
		Arr:   arr,
		Q:     q,
		T:     tq,
		Mu:    mu,
		Ev:    ev,
		Again: ints[0],
		Lo:    lo,
		Hi:    hi,
		Files: 6 + 1 + 1 + 2 + 2, // the Int64s, seg, arr, the queues, mu and ev
	}
	if err := spawn.Run(t.Context(), handles, a, nil); err != nil {
		t.Fatal(err)
	}
	// The child added i+1 to its i-th value; S.V and Again are one object.
	want := map[*shm.Int64]int64{ints[0]: 1 + 7, ints[1]: 2 + 1000, ints[2]: 3, ints[3]: 4, ints[4]: 5, ints[5]: 6, lo: 8, hi: 9}
	for v, w := range want {
		if got := v.Load(); got != w {
			t.Errorf("a value holds %d, want %d", got, w)
		}
	}
	if arr.Load(1) != 5 {
		t.Errorf("array[1] = %d, want 5", arr.Load(1))
	}
	if m, ok, err := q.TryGet(); !ok || err != nil || string(m) != "from the child" {
		t.Errorf("queue: %q, %v, %v", m, ok, err)
	}
	if v, ok, err := tq.TryGet(); !ok || err != nil || v != 42 {
		t.Errorf("typed queue: %d, %v, %v", v, ok, err)
	}
	if !ev.IsSet() {
		t.Error("the child's Set of the event is not seen")
	}
	// The child exited holding the mutex: the next Lock is told.
	if err := mu.Lock(); !errors.Is(err, semaphore.ErrOwnerDead) {
		t.Errorf("Lock after the child died holding it = %v, want ErrOwnerDead", err)
	}
}

// hidden hides a handle in an unexported field behind its own GobEncode,
// where spawn's walk does not look.
type hidden struct{ v *shm.Int64 }

func (h hidden) GobEncode() ([]byte, error) { return h.v.GobEncode() }
func (h *hidden) GobDecode(b []byte) error {
	h.v = new(shm.Int64)
	return h.v.GobDecode(b)
}

var takesHidden = spawn.Register("handoff-hidden", func(ctx context.Context, h hidden) error { return nil })

// TestHandlesHidden: an anonymous object that the walk cannot see fails at
// Start, in the parent, with ErrNoTransport; so does encoding one outside
// spawn.
func TestHandlesHidden(t *testing.T) {
	v := must[*shm.Int64](t)(shm.NewInt64())
	closeAll(t, v)
	if _, err := spawn.Start(t.Context(), takesHidden, hidden{v}, nil); !errors.Is(err, handoff.ErrNoTransport) {
		t.Fatalf("Start with a hidden anonymous object = %v, want ErrNoTransport", err)
	}
	if _, err := v.GobEncode(); !errors.Is(err, handoff.ErrNoTransport) {
		t.Fatalf("GobEncode outside spawn = %v, want ErrNoTransport", err)
	}
}
