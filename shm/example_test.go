//go:build linux

package shm_test

import (
	"fmt"
	"log"
	"os"

	"github.com/ipckit/ipckit/shm"
)

// A named segment holding a counter that any process of the same user can
// open by name.
func ExampleCreateInt64() {
	name := fmt.Sprintf("example-counter-%d", os.Getpid())
	v, err := shm.CreateInt64(name, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer shm.Remove(name)
	defer v.Close()

	other, err := shm.OpenInt64(name) // as another process would
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()
	v.Add(40)
	other.Add(2)
	fmt.Println(v.Load())
	// Output: 42
}

// Several values in one segment, at offsets the caller chooses.
func ExampleInt64At() {
	seg, err := shm.CreateAnonymous(64)
	if err != nil {
		log.Fatal(err)
	}
	defer seg.Close()
	hits, _ := shm.Int64At(seg, 0)
	misses, _ := shm.Int64At(seg, 8)
	hits.Add(3)
	misses.Add(1)
	fmt.Println(hits.Load(), misses.Load())
	// Output: 3 1
}

// Values found by name, made by whichever process asks first.
func ExampleCatalog() {
	c, err := shm.NewCatalog(1024) // or CreateCatalog(name, ...) for unrelated programs
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	hits, _ := c.Int64("hits") // made here, zeroed
	hits.Add(2)
	again, _ := c.Int64("hits") // found: the same memory
	fmt.Println(again.Load())
	// Output: 2
}
