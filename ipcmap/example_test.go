//go:build linux

package ipcmap_test

import (
	"context"
	"fmt"
	"log"

	"github.com/ipckit/ipckit/ipcmap"
)

// A map shared by processes, like Python's Manager().dict(): here in one
// process; pass m in a spawn argument to share it with a child.
func Example() {
	ctx := context.Background()
	m, err := ipcmap.New(&ipcmap.Options{Entries: 100, Bytes: 64 << 10})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	m.Set(ctx, []byte("greeting"), []byte("hello"))
	v, ok, _ := m.Get([]byte("greeting"))
	fmt.Println(string(v), ok)
	swapped, _ := m.CompareAndSwap(ctx, []byte("greeting"), []byte("hello"), []byte("bonjour"))
	v, _, _ = m.Get([]byte("greeting"))
	fmt.Println(swapped, string(v))
	n, _ := m.Len()
	fmt.Println(n)
	// Output:
	// hello true
	// true bonjour
	// 1
}

// A typed map: string keys, values of a struct of numbers (copied as
// bytes).
func ExampleTyped() {
	type point struct{ X, Y float64 }
	ctx := context.Background()
	m, err := ipcmap.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	points := ipcmap.NewTyped[string, point](m)
	defer points.Close()
	points.Set(ctx, "origin", point{0, 0})
	p, loaded, _ := points.LoadOrStore(ctx, "unit", point{1, 1})
	fmt.Println(p, loaded)
	for k, v := range points.Range() {
		if k == "origin" {
			fmt.Println(k, v)
		}
	}
	// Output:
	// {1 1} false
	// origin {0 0}
}
