//go:build linux

package semaphore_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/ipckit/ipckit/semaphore"
)

// A Condition hands items from a producer to consumers: each waits, the
// Condition's Mutex held, until an item is there. In other processes (a
// Condition passed to a child started by spawn) the code is the same.
func ExampleCondition() {
	c, err := semaphore.NewCondition()
	if err != nil {
		panic(err)
	}
	defer c.Close()
	ctx := context.Background()
	items, taken := 0, 0 // guarded by c; in shared memory across processes

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			c.Lock()
			defer c.Unlock()
			if err := c.WaitFor(ctx, func() bool { return items > 0 }); err != nil {
				panic(err)
			}
			items--
			taken++
		})
	}
	for range 3 {
		c.Do(ctx, func() error {
			items++
			return c.Notify(1)
		})
	}
	wg.Wait()
	fmt.Println(taken, items)
	// Output: 3 0
}

// Python's `with v.get_lock(): v.value += 1`: a Locked pairs a value with
// its Mutex, and Do runs the update with the Mutex held.
func ExampleLocked() {
	v, err := semaphore.NewLocked[int32](1) // Value('i', 0)
	if err != nil {
		panic(err)
	}
	defer v.Close()
	a := v.Array()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				v.Do(context.Background(), func() error {
					a.Store(0, a.Load(0)+1) // a read-modify-write: safe only under the lock
					return nil
				})
			}
		})
	}
	wg.Wait()
	fmt.Println(a.Load(0))
	// Output: 400
}

// A Barrier's action runs once per generation, in the last party to
// arrive, before any party leaves.
func ExampleBarrier_SetAction() {
	b, err := semaphore.NewBarrier(3)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	b.SetAction(func() error { fmt.Println("all three arrived"); return nil })
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := b.Wait(context.Background()); err != nil {
				panic(err)
			}
		})
	}
	wg.Wait()
	// Output: all three arrived
}
