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
	if _, err := NewTyped[[8192]byte](q); !errors.Is(err, ErrTooLarge) {
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

// TestTypedForeignMessage: on the fixed-size path, a message of another
// length (longer or shorter than T) or with an impossible bool byte is
// ErrCorrupt and consumed, so the values behind it still come out.
func TestTypedForeignMessage(t *testing.T) {
	ctx := t.Context()
	q := heapQueue(t, 1024, nil)
	tq, err := NewTyped[uint32](q)
	if err != nil || !tq.Fixed() {
		t.Fatalf("NewTyped = %v, fixed %v", err, tq.Fixed())
	}
	q.Put(ctx, []byte("12345678")) // longer than a uint32
	tq.Put(ctx, 7)
	q.Put(ctx, []byte("12")) // shorter
	tq.Put(ctx, 8)
	if _, err := tq.Get(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of an 8-byte message = %v, want ErrCorrupt", err)
	}
	if v, err := tq.Get(ctx); err != nil || v != 7 {
		t.Fatalf("Get after it = %v, %v; want 7", v, err)
	}
	if _, ok, err := tq.TryGet(); ok || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("TryGet of a 2-byte message = %v, %v; want ErrCorrupt", ok, err)
	}
	if v, ok, err := tq.TryGet(); err != nil || !ok || v != 8 {
		t.Fatalf("TryGet after it = %v, %v, %v; want 8", v, ok, err)
	}
	q.Put(ctx, make([]byte, 200)) // much longer than T
	tq.Put(ctx, 9)
	if _, ok, err := tq.TryGet(); ok || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("TryGet of a 200-byte message = %v, %v; want ErrCorrupt", ok, err)
	}
	if v, err := tq.Get(ctx); err != nil || v != 9 {
		t.Fatalf("Get after it = %v, %v; want 9", v, err)
	}

	type flags struct {
		A uint16
		B [2]bool
		C bool
	}
	q2 := heapQueue(t, 1024, nil)
	tb, err := NewTyped[flags](q2)
	if err != nil || !tb.Fixed() {
		t.Fatalf("NewTyped[flags] = %v, fixed %v", err, tb.Fixed())
	}
	for _, bad := range [][]byte{{1, 0, 0, 2, 1, 0}, {1, 0, 0, 0, 7, 0}} {
		q2.Put(ctx, bad)
		if _, err := tb.Get(ctx); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Get of %v = %v, want ErrCorrupt", bad, err)
		}
	}
	want := flags{A: 3, B: [2]bool{false, true}, C: true}
	tb.Put(ctx, want)
	if v, err := tb.Get(ctx); err != nil || v != want {
		t.Fatalf("Get = %+v, %v; want %+v", v, err, want)
	}
}
