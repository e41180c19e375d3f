//go:build linux

package ipcmap

import (
	"context"
	"fmt"
	"testing"

	"github.com/ipckit/ipckit/spawn"
)

// childArg carries an anonymous map, plain and typed, to a child.
type childArg struct {
	M     *Map
	Typed *Typed[string, int64]
}

// childSet runs in a child started by spawn: it reads what the parent
// wrote and writes its answers to the same maps.
var childSet = spawn.Register("ipcmap-child-set", func(ctx context.Context, a childArg) error {
	defer a.M.Close()
	defer a.Typed.Close()
	v, ok, err := a.M.Get([]byte("from parent"))
	if err != nil || !ok || string(v) != "hello" {
		return fmt.Errorf("child: Get(from parent) = %q, %v, %v", v, ok, err)
	}
	if err := a.M.Set(ctx, []byte("from child"), []byte("hi")); err != nil {
		return err
	}
	n, ok, err := a.Typed.Get("n")
	if err != nil || !ok {
		return fmt.Errorf("child: typed Get(n) = %v, %v, %v", n, ok, err)
	}
	return a.Typed.Set(ctx, "n", n+1)
})

// TestSpawnHandoff passes anonymous maps to a child in its argument: they
// arrive attached to the same memory.
func TestSpawnHandoff(t *testing.T) {
	ctx := t.Context()
	m, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tm, err := New(&Options{Entries: 4, Bytes: 256})
	if err != nil {
		t.Fatal(err)
	}
	typed := NewTyped[string, int64](tm)
	defer typed.Close()
	m.Set(ctx, []byte("from parent"), []byte("hello"))
	typed.Set(ctx, "n", 41)
	if err := spawn.Run(ctx, childSet, childArg{M: m, Typed: typed}, nil); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := m.Get([]byte("from child")); err != nil || !ok || string(v) != "hi" {
		t.Fatalf("Get(from child) = %q, %v, %v", v, ok, err)
	}
	if n, ok, err := typed.Get("n"); err != nil || !ok || n != 42 {
		t.Fatalf("typed Get(n) = %v, %v, %v; want 42", n, ok, err)
	}
	// A heap map cannot travel.
	h := heapMap(t, nil)
	if err := spawn.Run(ctx, childSet, childArg{M: h, Typed: typed}, nil); err == nil {
		t.Fatal("spawn with a heap map succeeded")
	}
}
