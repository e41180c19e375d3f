package ipcqueue

import (
	"encoding/gob"
	"errors"
	"io"
	"strings"
	"testing"
)

type job struct {
	ID   int
	Name string
}

// TestTypedNil: a nil pointer (Python's None poison pill) arrives as nil,
// not as a pointer to a zero value, between values that arrive whole; so
// does a nil interface.
func TestTypedNil(t *testing.T) {
	ctx := t.Context()
	q := heapQueue(t, 4096, nil)
	tq, err := NewTyped[*job](q)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []*job{{ID: 1, Name: "a"}, nil, {}, nil} {
		if err := tq.Put(ctx, v); err != nil {
			t.Fatalf("Put(%v) = %v", v, err)
		}
	}
	for i, want := range []*job{{ID: 1, Name: "a"}, nil, {}, nil} {
		got, err := tq.Get(ctx)
		if err != nil {
			t.Fatalf("Get %d = %v", i, err)
		}
		if (got == nil) != (want == nil) || got != nil && *got != *want {
			t.Fatalf("Get %d = %#v, want %#v", i, got, want)
		}
	}
	ta, err := NewTyped[any](q)
	if err != nil {
		t.Fatal(err)
	}
	if err := ta.Put(ctx, nil); err != nil {
		t.Fatalf("Put(nil) on Typed[any] = %v", err)
	}
	if v, err := ta.Get(ctx); err != nil || v != nil {
		t.Fatalf("Get of a nil any = %#v, %v", v, err)
	}
}

type unregistered struct{ N int }

type registered struct{ N int }

func init() { gob.Register(registered{}) }

// TestTypedAnyRegister: Typed[any] with a type nobody registered fails
// with an error that says to call gob.Register; a registered one travels.
func TestTypedAnyRegister(t *testing.T) {
	ctx := t.Context()
	q := heapQueue(t, 4096, nil)
	ta, err := NewTyped[any](q)
	if err != nil {
		t.Fatal(err)
	}
	err = ta.Put(ctx, unregistered{N: 1})
	if err == nil || !strings.Contains(err.Error(), "gob.Register") {
		t.Fatalf("Put of an unregistered type = %v, want an error naming gob.Register", err)
	}
	if q.Len() != 0 {
		t.Fatalf("the failed Put left %d messages", q.Len())
	}
	if err := ta.Put(ctx, registered{N: 2}); err != nil {
		t.Fatal(err)
	}
	if v, err := ta.Get(ctx); err != nil || v != (registered{N: 2}) {
		t.Fatalf("Get = %#v, %v", v, err)
	}
}

// TestNewTypedQueue: one call makes a typed queue of the default size,
// whose Put blocks (here: TryPut refuses) once it is full, and whose
// Shutdown ends the consumers' loop with io.EOF after the values.
func TestNewTypedQueue(t *testing.T) {
	ctx := t.Context()
	tq, err := NewTypedQueue[int64](0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tq.Close()
	if got := tq.Queue().Capacity(); got != DefaultTypedSize-8 {
		t.Fatalf("Capacity = %d, want %d", got, DefaultTypedSize-8)
	}
	n := 0
	for {
		ok, err := tq.TryPut(int64(n))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		n++
	}
	if n != (DefaultTypedSize-8)/16 {
		t.Fatalf("a full queue held %d values, want %d", n, (DefaultTypedSize-8)/16)
	}
	if err := tq.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if v, err := tq.Get(ctx); err != nil || v != int64(i) {
			t.Fatalf("Get %d = %v, %v", i, v, err)
		}
	}
	if _, err := tq.Get(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Get after Shutdown and drain = %v, want io.EOF", err)
	}
	if _, err := NewTypedQueue[int64](-1, nil); err == nil {
		t.Fatal("NewTypedQueue(-1) succeeded")
	}
}
