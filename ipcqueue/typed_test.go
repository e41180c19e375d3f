package ipcqueue

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

type point struct {
	X, Y int64
	Tag  [4]byte
}

type record struct {
	Name string
	Vals []int
}

func TestTyped(t *testing.T) {
	q := heapQueue(t, 4096, nil)
	ctx := t.Context()
	p, err := NewTyped[point](q)
	if err != nil || !p.Fixed() {
		t.Fatalf("NewTyped[point]: %v, fixed %v", err, p.Fixed())
	}
	want := point{X: 3, Y: 4, Tag: [4]byte{'x'}}
	if err := p.Put(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Get(ctx); err != nil || got != want {
		t.Fatalf("Get = %v, %v", got, err)
	}
	r, err := NewTyped[record](q)
	if err != nil || r.Fixed() {
		t.Fatalf("NewTyped[record]: %v, fixed %v", err, r.Fixed())
	}
	wr := record{Name: "n", Vals: []int{1, 2}}
	if ok, err := r.TryPut(wr); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if got, ok, err := r.TryGet(); !ok || err != nil || !reflect.DeepEqual(got, wr) {
		t.Fatalf("TryGet = %v %v %v", got, ok, err)
	}
	// A message of the wrong size for a fixed T is ErrCorrupt.
	q.Put(ctx, []byte("short"))
	if _, err := p.Get(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of a 5-byte point = %v", err)
	}
	if _, err := NewTyped[[8192]byte](q); !errors.Is(err, ErrSize) {
		t.Fatalf("NewTyped of a too large T = %v", err)
	}
}

// TestAllocs: Put and GetInto allocate nothing, nor does the fixed-size
// Typed path.
func TestAllocs(t *testing.T) {
	q := heapQueue(t, 4096, nil)
	p, _ := NewTyped[point](q)
	ctx := context.Background()
	msg, buf := make([]byte, 64), make([]byte, 64)
	if n := testing.AllocsPerRun(1000, func() {
		q.Put(ctx, msg)
		q.GetInto(ctx, buf)
	}); n != 0 {
		t.Errorf("Put+GetInto: %v allocs", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		p.Put(ctx, point{X: 1})
		p.Get(ctx)
	}); n != 0 {
		t.Errorf("Typed[point] Put+Get: %v allocs", n)
	}
}
