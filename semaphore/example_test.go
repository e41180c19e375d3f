//go:build linux

package semaphore_test

import (
	"errors"
	"fmt"
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
