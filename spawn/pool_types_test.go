//go:build linux

package spawn_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ipckit/ipckit/spawn"
)

// unregistered is a type no one registers with gob: it cannot travel in
// an interface.
type unregistered struct{ A int }

type withChan struct{ C chan int }

var (
	// ptrOut returns nil for 3 and &x otherwise.
	ptrOut = spawn.RegisterTask("pool-ptr-out", func(ctx context.Context, x int) (*int, error) {
		if x == 3 {
			return nil, nil
		}
		return &x, nil
	})
	// ptrIn returns -1 for a nil input.
	ptrIn = spawn.RegisterTask("pool-ptr-in", func(ctx context.Context, x *int) (int, error) {
		if x == nil {
			return -1, nil
		}
		return *x, nil
	})
	// anyOut returns, for 3, a value gob cannot encode in an interface.
	anyOut = spawn.RegisterTask("pool-any-out", func(ctx context.Context, x int) (any, error) {
		if x == 3 {
			return unregistered{x}, nil
		}
		return x, nil
	})
	anyIn = spawn.RegisterTask("pool-any-in", func(ctx context.Context, x any) (int, error) {
		n, _ := x.(int)
		return n, nil
	})
	chanOut = spawn.RegisterTask("pool-chan-out", func(ctx context.Context, x int) (withChan, error) { return withChan{}, nil })
	chanIn  = spawn.RegisterTask("pool-chan-in", func(ctx context.Context, x withChan) (int, error) { return 0, nil })
)

// TestPoolNilPointers: nil pointers as results and as inputs, amid others
// in one chunk, arrive as nil; the pool goes on.
func TestPoolNilPointers(t *testing.T) {
	// Bounded: before the fix the pool wedged.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	p := newPool(t, ptrOut, &spawn.PoolOptions{Workers: 2, ChunkSize: 10})
	out, err := p.Map(ctx, ints(20))
	if err != nil {
		t.Fatalf("Map with a nil result: %v", err)
	}
	for i, o := range out {
		if (i == 3) != (o == nil) || o != nil && *o != i {
			t.Fatalf("item %d = %v", i, o)
		}
	}
	if y, err := p.Apply(ctx, 5); err != nil || y == nil || *y != 5 {
		t.Fatalf("Apply afterwards = %v, %v", y, err)
	}
	closeWait(t, p)

	q := newPool(t, ptrIn, &spawn.PoolOptions{Workers: 1, ChunkSize: 10})
	xs := make([]*int, 10)
	for i := range xs {
		if i != 3 {
			xs[i] = &i
		}
	}
	got, err := q.Map(ctx, xs)
	if err != nil {
		t.Fatalf("Map with a nil input: %v", err)
	}
	for i, y := range got {
		if want := map[bool]int{true: -1, false: i}[i == 3]; y != want {
			t.Fatalf("item %d = %d, want %d", i, y, want)
		}
	}
	closeWait(t, q)
}

// onlyFailed checks that err is a *MapError failing exactly item bad with
// a *TaskError that mentions encoding.
func onlyFailed(t *testing.T, err error, bad int) {
	t.Helper()
	var me *spawn.MapError
	if !errors.As(err, &me) || len(me.Errs) != 1 {
		t.Fatalf("err = %v, want a MapError with exactly item %d", err, bad)
	}
	var te *spawn.TaskError
	if !errors.As(me.Errs[0], &te) || te.Task != bad || !strings.Contains(te.Msg, "encode") {
		t.Fatalf("failure %v, want item %d's encoding error", me.Errs[0], bad)
	}
}

// TestPoolUnencodableValue: one value gob cannot encode (an unregistered
// type in an interface), as a result or as an input, fails that item only,
// not its chunk.
func TestPoolUnencodableValue(t *testing.T) {
	ctx := t.Context()
	p := newPool(t, anyOut, &spawn.PoolOptions{Workers: 2, ChunkSize: 10})
	out, err := p.Map(ctx, ints(20))
	onlyFailed(t, err, 3)
	for i, o := range out {
		if i != 3 && o != i {
			t.Fatalf("item %d = %v", i, o)
		}
	}
	closeWait(t, p)

	q := newPool(t, anyIn, &spawn.PoolOptions{Workers: 2, ChunkSize: 10})
	xs := make([]any, 20)
	for i := range xs {
		xs[i] = i
	}
	xs[13] = unregistered{13}
	got, err := q.Map(ctx, xs)
	onlyFailed(t, err, 13)
	for i, y := range got {
		if i != 13 && y != i {
			t.Fatalf("item %d = %d", i, y)
		}
	}
	closeWait(t, q)
}

// TestPoolRefusesUnencodableTypes: types gob rejects whatever the value
// are refused by NewPool, with ErrType.
func TestPoolRefusesUnencodableTypes(t *testing.T) {
	if p, err := spawn.NewPool(t.Context(), chanOut, nil); !errors.Is(err, spawn.ErrType) {
		if p != nil {
			p.Close()
		}
		t.Fatalf("NewPool with a chan-only output type = %v, want ErrType", err)
	}
	if p, err := spawn.NewPool(t.Context(), chanIn, nil); !errors.Is(err, spawn.ErrType) {
		if p != nil {
			p.Close()
		}
		t.Fatalf("NewPool with a chan-only input type = %v, want ErrType", err)
	}
}
