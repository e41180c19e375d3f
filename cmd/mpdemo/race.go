package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ipckit/ipckit/semaphore"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// addArg is what each child of the race and lock demos receives: the shared
// value (Python's mp.Value('i', 0)), its step, and for the lock demo a
// process lock. Both travel to the child attached to the same memory.
type addArg struct {
	V    *shm.Int32
	Step int32
	Lock *semaphore.Mutex // nil in the race demo
}

// addFive is the tutorial's job: five times, sleep 100 ms, then read the
// value, add the step and write it back. The read and the write are two
// steps, so without the lock the two processes overwrite each other's
// updates. With the lock it is held around the whole loop, as the tutorial
// does, and each value goes on a line of its own.
var addFive = spawn.Register("mpdemo.addFive", func(_ context.Context, a addArg) error {
	defer a.V.Close()
	end := ""
	if a.Lock != nil {
		defer a.Lock.Close()
		if err := a.Lock.Lock(); err != nil {
			return err
		}
		defer a.Lock.Unlock()
		end = "\n"
	}
	for range 5 {
		time.Sleep(100 * time.Millisecond)
		a.V.Store(a.V.Load() + a.Step) // v.value += num, unlocked: the racy way
		fmt.Print(a.V.Load(), end)
	}
	return nil
})

// addTwice runs addFive in two processes, with steps 1 and 3, and waits.
func addTwice(ctx context.Context, lock *semaphore.Mutex) error {
	v, err := shm.NewInt32()
	if err != nil {
		return err
	}
	defer v.Close()
	p1, err := spawn.Start(ctx, addFive, addArg{V: v, Step: 1, Lock: lock}, nil)
	if err != nil {
		return err
	}
	p2, err := spawn.Start(ctx, addFive, addArg{V: v, Step: 3, Lock: lock}, nil)
	if err != nil {
		p1.Kill()
		p1.Wait()
		return err
	}
	return errors.Join(p1.Wait(), p2.Wait())
}

// race is the tutorial's shared-memory demo without a lock: the running
// values print with no separator, and the total usually falls short of 20.
func race(ctx context.Context) error {
	if err := addTwice(ctx, nil); err != nil {
		return err
	}
	fmt.Println()
	return nil
}

// lockDemo is the same with a process lock: 1 2 3 4 5 8 11 14 17 20, or
// 3 6 9 12 15 16 17 18 19 20 when the +3 process takes the lock first.
func lockDemo(ctx context.Context) error {
	lock, err := semaphore.NewMutex()
	if err != nil {
		return err
	}
	defer lock.Close()
	return addTwice(ctx, lock)
}
