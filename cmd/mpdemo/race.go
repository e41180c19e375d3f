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

// The race demo, and what it shows
//
// Each of two processes adds to a shared int32 five times, reading the
// value and writing back the sum in two steps with no lock: the updates of
// the two processes interleave with no synchronization. Each round starts
// with the tutorial's 100 ms pause, so the two read-then-write steps,
// nanoseconds long, almost never overlap: nearly every run ends at 20, as
// the tutorial's printed run does. But nothing keeps them apart. When a
// process reads, the other writes, and then the first writes back its stale
// sum, the other's update is lost, and the value can even go down.
//
// With -window D both processes start together (a barrier) and each holds
// every value it read for D before writing it back. Once D is longer than
// the 100 ms pause, no hold of one process fits between two of the other's,
// so while both run their updates overlap and some are lost. The demo then
// prints the total after its values.

// raceWindow is the -window flag: how long each process of the race and
// lock demos holds a value it read before writing the sum back. Zero, the
// default, is the tutorial.
var raceWindow time.Duration

// Each process adds its step (1 or 3) raceRounds times, as in the tutorial,
// so a run that loses no update ends at raceTotal.
const (
	raceRounds = 5
	raceTotal  = raceRounds * (1 + 3)
)

// addArg is what each child of the race and lock demos receives: the shared
// value (Python's mp.Value('i', 0)), its step, and for the lock demo a
// process lock; with a window, the start barrier and the window. All travel
// to the child attached to the same memory.
type addArg struct {
	V      *shm.Int32
	Step   int32
	Lock   *semaphore.Mutex   // nil in the race demo
	Start  *semaphore.Barrier // nil without a window
	Window time.Duration
}

// addFive is the tutorial's job: five times, sleep 100 ms, then read the
// value, add the step and write it back. The read and the write are two
// steps, so without the lock the two processes' updates interleave; a
// window between them makes the processes overwrite each other's updates.
// With the lock it is held around the whole loop, as the tutorial does, and
// each value goes on a line of its own.
var addFive = spawn.Register("mpdemo.addFive", func(ctx context.Context, a addArg) error {
	defer a.V.Close()
	if a.Start != nil {
		defer a.Start.Close()
		if _, err := a.Start.Wait(ctx); err != nil {
			return err
		}
	}
	end := ""
	if a.Lock != nil {
		defer a.Lock.Close()
		if err := a.Lock.Lock(); err != nil {
			return err
		}
		defer a.Lock.Unlock()
		end = "\n"
	}
	for range raceRounds {
		time.Sleep(100 * time.Millisecond)
		x := a.V.Load() // v.value += num, unlocked: the racy way
		time.Sleep(a.Window)
		a.V.Store(x + a.Step)
		fmt.Print(a.V.Load(), end)
	}
	return nil
})

// addTwice runs addFive in two processes, with steps 1 and 3, waits, and
// returns the total.
func addTwice(ctx context.Context, lock *semaphore.Mutex) (int32, error) {
	v, err := shm.NewInt32()
	if err != nil {
		return 0, err
	}
	defer v.Close()
	arg := addArg{V: v, Lock: lock, Window: raceWindow}
	if raceWindow > 0 {
		if arg.Start, err = semaphore.NewBarrier(2); err != nil {
			return 0, err
		}
		defer arg.Start.Close()
	}
	arg.Step = 1
	p1, err := spawn.Start(ctx, addFive, arg, nil)
	if err != nil {
		return 0, err
	}
	arg.Step = 3
	p2, err := spawn.Start(ctx, addFive, arg, nil)
	if err != nil {
		p1.Kill()
		p1.Wait()
		return 0, err
	}
	err = errors.Join(p1.Wait(), p2.Wait())
	return v.Load(), err
}

// printTotal says, after a run with a window, whether updates were lost.
func printTotal(total int32) {
	if raceWindow <= 0 {
		return
	}
	if total < raceTotal {
		fmt.Printf("total %d of %d: updates were lost (-window %v)\n", total, raceTotal, raceWindow)
	} else {
		fmt.Printf("total %d of %d: no update was lost (-window %v)\n", total, raceTotal, raceWindow)
	}
}

// race is the tutorial's shared-memory demo without a lock: the running
// values print with no separator, each process's updates interleaved with
// the other's. See "The race demo, and what it shows" above.
func race(ctx context.Context) error {
	total, err := addTwice(ctx, nil)
	if err != nil {
		return err
	}
	fmt.Println()
	printTotal(total)
	return nil
}

// lockDemo is the same with a process lock: 1 2 3 4 5 8 11 14 17 20, or
// 3 6 9 12 15 16 17 18 19 20 when the +3 process takes the lock first; with
// a window too, as the lock spans each process's whole loop.
func lockDemo(ctx context.Context) error {
	lock, err := semaphore.NewMutex()
	if err != nil {
		return err
	}
	defer lock.Close()
	total, err := addTwice(ctx, lock)
	if err != nil {
		return err
	}
	printTotal(total)
	return nil
}
