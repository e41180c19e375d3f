//go:build linux

package shm_test

import (
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/ipckit/ipckit/shm"
)

// A named segment: one process creates it and writes to it, another opens
// it by name and sees the same bytes.
func ExampleSegment() {
	name := fmt.Sprintf("example-segment-%d", os.Getpid())
	seg, err := shm.Create(name, 64, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer shm.Remove(name) // the name goes; mappings stay until Close
	defer seg.Close()
	n := copy(seg.Bytes(), "hello from the creator")

	other, err := shm.Open(name) // as another process would
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()
	fmt.Println(other.Size(), other.Kind())
	fmt.Println(string(other.Bytes()[:n]))
	// Output:
	// 64 bytes
	// hello from the creator
}

// Open's errors say what went wrong, with the standard sentinels where the
// meaning is theirs.
func ExampleOpen() {
	_, err := shm.Open("no-such-segment-here")
	fmt.Println(errors.Is(err, os.ErrNotExist))
	_, err = shm.Open("../etc/passwd")
	fmt.Println(errors.Is(err, os.ErrInvalid))
	// Output:
	// true
	// true
}

// An array of floats shared by the processes of a job, like Python's
// multiprocessing.Array('d', 3). Each element's operations are atomic.
func ExampleArray() {
	a, err := shm.NewArray[float64](3) // or CreateArray(name, 3, nil) for unrelated programs
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	for i := range a.Len() {
		a.Store(i, float64(i)/2)
	}
	a.Add(2, 10)
	fmt.Println(a.Len(), a.Load(0), a.Load(1), a.Load(2))
	// Output: 3 0 0.5 11
}

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
