//go:build linux

package semaphore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/ipckit/ipckit/semaphore"
	"github.com/ipckit/ipckit/shm"
)

// A Mutex guards a shared counter; passed to a child started by spawn, it
// guards it across processes the same way.
func ExampleMutex() {
	m, err := semaphore.NewMutex()
	if err != nil {
		panic(err)
	}
	defer m.Close()
	v, _ := shm.NewInt64()
	defer v.Close()

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				err := m.Lock()
				if errors.Is(err, semaphore.ErrOwnerDead) {
					// The last holder died inside: repair v here, then:
					m.MarkConsistent()
				} else if err != nil {
					panic(err)
				}
				v.Store(v.Load() + 1)
				m.Unlock()
			}
		})
	}
	wg.Wait()
	fmt.Println(v.Load())
	// Output: 4000
}

func ExampleSemaphore() {
	s, err := semaphore.NewSemaphore(2, &semaphore.SemaphoreOptions{Bounded: true})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	fmt.Println(s.TryAcquire(), s.TryAcquire(), s.TryAcquire())
	s.Release()
	s.Release()
	fmt.Println(s.Release())
	// Output:
	// true true false
	// semaphore: released too many times
}

// An Event lets one side tell the others that something happened; a child
// started by spawn waits on it the same way.
func ExampleEvent() {
	e, err := semaphore.NewEvent()
	if err != nil {
		panic(err)
	}
	defer e.Close()

	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Wait(context.Background()); err != nil {
			panic(err)
		}
		fmt.Println("the event is set")
	}()
	e.Set()
	<-done
	fmt.Println(e.IsSet())
	e.Clear()
	fmt.Println(e.IsSet())
	// Output:
	// the event is set
	// true
	// false
}

// A Barrier holds every party until the last one arrives; each gets its
// arrival index.
func ExampleBarrier() {
	b, err := semaphore.NewBarrier(3)
	if err != nil {
		panic(err)
	}
	defer b.Close()

	var wg sync.WaitGroup
	indexes := make([]int, 3)
	for i := range indexes {
		wg.Go(func() {
			idx, err := b.Wait(context.Background())
			if err != nil {
				panic(err)
			}
			indexes[i] = idx
		})
	}
	wg.Wait()
	slices.Sort(indexes)
	fmt.Println(b.Parties(), indexes, b.Broken())
	// Output: 3 [0 1 2] false
}

// A FileMutex is a lock on a file that every process opening the same path
// shares. Here two handles on one path stand for two processes; closing a
// handle that holds the lock is like its process dying.
func ExampleFileMutex() {
	dir, err := os.MkdirTemp("", "ipckit-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "lock")

	a, err := semaphore.NewFileMutex(path)
	if err != nil {
		panic(err)
	}
	defer a.Close()
	b, err := semaphore.NewFileMutex(path)
	if err != nil {
		panic(err)
	}

	if err := b.Lock(); err != nil {
		panic(err)
	}
	ok, err := a.TryLock()
	fmt.Println("a while b holds it:", ok, err)

	b.Close() // b "dies" holding the lock: the kernel releases it
	ok, err = a.TryLock()
	fmt.Println("a after b died:", ok, errors.Is(err, semaphore.ErrOwnerDead))
	// a holds the lock: repair what it guards, then
	a.MarkConsistent()
	a.Unlock()

	fmt.Println(a.Lock(), a.Unlock())
	// Output:
	// a while b holds it: false <nil>
	// a after b died: true true
	// <nil> <nil>
}
