//go:build linux

package semaphore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
)

type condArgs struct {
	C    *Condition
	Done *shm.Int64
}

func init() {
	// condwait: lock, wait to be notified, count it, unlock.
	helperproc.Register("condwait", func(args []string) error {
		var a condArgs
		if err := receive(args, &a); err != nil {
			return err
		}
		defer a.C.Close()
		defer a.Done.Close()
		if err := a.C.Lock(); err != nil {
			return err
		}
		if err := a.C.Wait(context.Background()); err != nil {
			return err
		}
		a.Done.Add(1)
		return a.C.Unlock()
	})
	// condnotifydie: lock, notify one waiter, and die holding the mutex.
	helperproc.Register("condnotifydie", func(args []string) error {
		var a condArgs
		if err := receive(args, &a); err != nil {
			return err
		}
		if err := a.C.Lock(); err != nil {
			return err
		}
		if err := a.C.Notify(1); err != nil {
			return err
		}
		fmt.Println("holding")
		time.Sleep(time.Minute)
		return nil
	})
}

// heapCondition returns a Condition on a heap segment, for the race
// detector.
func heapCondition(t *testing.T) *Condition {
	t.Helper()
	seg, err := shm.NewHeap(ConditionSize)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ConditionAt(seg, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitCounted waits until n waiters are counted in on c.
func waitCounted(t *testing.T, c *Condition, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); c.Waiting() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters counted in, want %d", c.Waiting(), n)
		}
	}
}

// mustDo runs f with c locked, failing the test on an error.
func mustDo(t *testing.T, c *Condition, f func() error) {
	t.Helper()
	if err := c.Do(t.Context(), f); err != nil {
		t.Fatal(err)
	}
}

// TestConditionProducerConsumer hands items from producers to consumers
// through a count guarded by the Condition, with Notify(1) per item: a lost
// notification leaves a consumer asleep with an item waiting, and the
// test's deadline catches it. On the heap, under the race detector.
func TestConditionProducerConsumer(t *testing.T) {
	c := heapCondition(t)
	const producers, consumers, items = 3, 3, 300
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var avail, got int // guarded by c
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for range items {
				if err := c.Do(ctx, func() error { avail++; return c.Notify(1) }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range consumers {
		wg.Go(func() {
			for {
				if err := c.Lock(); err != nil {
					t.Error(err)
					return
				}
				err := c.WaitFor(ctx, func() bool { return avail > 0 || got == producers*items })
				if err == nil && got < producers*items {
					avail--
					got++
					if got == producers*items {
						err = c.NotifyAll() // release the other consumers
					}
				}
				done := got == producers*items
				c.Unlock()
				if err != nil {
					t.Errorf("consumer: %v (got %d of %d)", err, got, producers*items)
					return
				}
				if done {
					return
				}
			}
		})
	}
	wg.Wait()
	if got != producers*items || avail != 0 {
		t.Fatalf("consumed %d, %d left, want %d and 0", got, avail, producers*items)
	}
	if n := c.Waiting(); n != 0 {
		t.Fatalf("%d waiters left counted in", n)
	}
}

// TestConditionNotifyBetweenUnlockAndSleep notifies a waiter after Wait
// unlocked the Mutex and before it sleeps: the notification must end the
// sleep, not be lost.
func TestConditionNotifyBetweenUnlockAndSleep(t *testing.T) {
	c := heapCondition(t)
	condHooks.unlocked = func() {
		condHooks.unlocked = nil
		mustDo(t, c, func() error { return c.Notify(1) })
	}
	defer func() { condHooks.unlocked = nil }()
	ctx, cancel := context.WithTimeout(t.Context(), slowBound)
	defer cancel()
	if err := c.Lock(); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("Wait notified between its Unlock and its sleep = %v, want nil: the notification was lost", err)
	}
	if err := c.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestConditionNotifyAsWaiterGivesUp notifies a waiter whose deadline has
// just ended, before it counts itself out: it takes the notification and
// returns nil, rather than losing it.
func TestConditionNotifyAsWaiterGivesUp(t *testing.T) {
	c := heapCondition(t)
	condHooks.gaveUp = func() {
		condHooks.gaveUp = nil
		mustDo(t, c, func() error { return c.Notify(1) })
	}
	defer func() { condHooks.gaveUp = nil }()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	c.Lock()
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("Wait notified as its deadline ended = %v, want nil: the notification was lost", err)
	}
	c.Unlock()
	if w, s := splitCounts(c.counts.Load()); w != 0 || s != 0 {
		t.Fatalf("%d waiters and %d signals left, want none", w, s)
	}
}

// TestConditionNotifyAfterFailedTake wakes a waiter with no signal for it
// (the sequence word moved, as when another waiter took the signal), and
// notifies it between its failed take and its next sleep: that sleep must
// end at once.
func TestConditionNotifyAfterFailedTake(t *testing.T) {
	c := heapCondition(t)
	failed := make(chan struct{})
	condHooks.takeFailed = func() {
		condHooks.takeFailed = nil
		mustDo(t, c, func() error { return c.Notify(1) })
		close(failed)
	}
	defer func() { condHooks.takeFailed = nil }()
	ctx, cancel := context.WithTimeout(t.Context(), slowBound)
	defer cancel()
	waited := make(chan error, 1)
	c.Lock()
	go func() { waited <- errors.Join(c.Wait(ctx), c.Unlock()) }()
	waitCounted(t, c, 1)
	asleepIn(t, 1, "(*Condition).sleep")
	c.seq.Add(1) // a signal someone else took: the word moved, no signal left
	futex.Wake(addr(c.seq), 0)
	<-failed
	if err := <-waited; err != nil || ctx.Err() != nil {
		t.Fatalf("Wait notified between a failed take and its next sleep = %v, at its deadline: %v; want nil before it: the notification was lost (or found only on giving up)", err, ctx.Err())
	}
}

// TestConditionNotifyBeforeWait: a Notify with nobody waiting is not kept
// for a later waiter (as in Python), and a Wait returns on its deadline
// with the Mutex held again and nothing counted in.
func TestConditionNotifyBeforeWait(t *testing.T) {
	c := heapCondition(t)
	mustDo(t, c, func() error { return c.Notify(1) })
	mustDo(t, c, c.NotifyAll)
	if err := c.Lock(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := c.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait after a Notify to nobody = %v, want DeadlineExceeded", err)
	}
	if ok, _ := c.Mutex().TryLock(); ok {
		t.Fatal("Wait returned on its deadline without the Mutex held")
	}
	if err := c.Unlock(); err != nil {
		t.Fatalf("Unlock after Wait's timeout: %v", err)
	}
	if n := c.Waiting(); n != 0 {
		t.Fatalf("%d waiters counted in after a timeout, want 0", n)
	}
	// WaitFor: false until the deadline, then ctx's error.
	c.Lock()
	defer c.Unlock()
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := c.WaitFor(ctx, func() bool { return false }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor(false) = %v, want DeadlineExceeded", err)
	}
}

// TestConditionNotifyN: Notify(2) releases exactly two of five waiters;
// the other three stay asleep until NotifyAll.
func TestConditionNotifyN(t *testing.T) {
	c := heapCondition(t)
	const waiters = 5
	var returned atomic.Int32
	var wg sync.WaitGroup
	for range waiters {
		wg.Go(func() {
			if err := c.Lock(); err != nil {
				t.Error(err)
				return
			}
			if err := c.Wait(t.Context()); err != nil {
				t.Error(err)
			}
			returned.Add(1)
			c.Unlock()
		})
	}
	waitCounted(t, c, waiters)
	asleepIn(t, waiters, "(*Condition).sleep")
	mustDo(t, c, func() error { return c.Notify(2) })
	for deadline := time.Now().Add(slowBound); returned.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters returned after Notify(2), want 2", returned.Load())
		}
	}
	asleepIn(t, waiters-2, "(*Condition).sleep")
	if n, w := returned.Load(), c.Waiting(); n != 2 || w != waiters-2 {
		t.Fatalf("after Notify(2): %d returned, %d still counted in; want 2 and %d", n, w, waiters-2)
	}
	mustDo(t, c, c.NotifyAll)
	wg.Wait()
	if c.Waiting() != 0 {
		t.Fatalf("%d counted in after NotifyAll", c.Waiting())
	}
}

// startCond starts helper name with a and waits for it in the background;
// the helper's exit error, if any, fails the test.
func startCond(t *testing.T, name string, a condArgs) *exec.Cmd {
	t.Helper()
	cmd := start(t, name, a)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func newCondArgs(t *testing.T) condArgs {
	t.Helper()
	c, err := NewCondition()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	done, err := shm.NewInt64()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { done.Close() })
	return condArgs{C: c, Done: done}
}

// TestConditionNotifyAllProcesses: five processes wait; one NotifyAll
// releases them all.
func TestConditionNotifyAllProcesses(t *testing.T) {
	a := newCondArgs(t)
	const procs = 5
	var cmds []*exec.Cmd
	for range procs {
		cmds = append(cmds, startCond(t, "condwait", a))
	}
	waitCounted(t, a.C, procs)
	mustDo(t, a.C, a.C.NotifyAll)
	for _, cmd := range cmds {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if err := within(t, done, "a waiter after NotifyAll"); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Done.Load(); n != procs {
		t.Fatalf("%d processes notified, want %d", n, procs)
	}
}

// TestConditionWaiterKilled kills a process asleep in Wait: the next
// Notify(1) still reaches the living waiter, which the dead one cannot
// take. What the dead waiter costs (a pending signal when nobody else
// waits) is at most one extra wake-up, also checked.
func TestConditionWaiterKilled(t *testing.T) {
	a := newCondArgs(t)
	cmd := startCond(t, "condwait", a)
	waitCounted(t, a.C, 1)
	helperproc.Kill(cmd)
	cmd.Wait()

	living := make(chan error, 1)
	go func() {
		if err := a.C.Lock(); err != nil {
			living <- err
			return
		}
		err := a.C.Wait(t.Context())
		living <- errors.Join(err, a.C.Unlock())
	}()
	waitCounted(t, a.C, 2)
	asleepIn(t, 1, "(*Condition).sleep")
	mustDo(t, a.C, func() error { return a.C.Notify(1) })
	if err := within(t, living, "the living waiter after Notify(1)"); err != nil {
		t.Fatal(err)
	}
	if n := a.C.Waiting(); n != 1 {
		t.Fatalf("%d waiters counted in, want 1 (the dead one)", n)
	}
	// Only the dead waiter left: a Notify leaves one signal pending, which
	// may release one waiter more than the next Notify asks: never more.
	mustDo(t, a.C, func() error { return a.C.Notify(1) })
	var released atomic.Int32
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for range 3 {
		wg.Go(func() {
			a.C.Lock()
			if a.C.Wait(ctx) == nil {
				released.Add(1)
			}
			a.C.Unlock()
		})
	}
	waitCounted(t, a.C, 4)
	asleepIn(t, 3, "(*Condition).sleep")
	mustDo(t, a.C, func() error { return a.C.Notify(1) })
	for deadline := time.Now().Add(slowBound); released.Load() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Notify(1) released nobody")
		}
	}
	asleepIn(t, 1, "(*Condition).sleep") // at least one stays asleep
	if n := released.Load(); n > 2 {
		t.Fatalf("Notify(1) with one dead waiter released %d, want at most 2", n)
	}
	cancel()
	wg.Wait()
}

// TestConditionHolderDies: a process takes the Mutex from a waiter,
// notifies it, and dies holding the Mutex: the waiter returns from Wait
// with ErrOwnerDead and the Mutex held.
func TestConditionHolderDies(t *testing.T) {
	a := newCondArgs(t)
	if err := a.C.Lock(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- a.C.Wait(t.Context()) }()
	waitCounted(t, a.C, 1)
	h := helperproc.Start(t, start(t, "condnotifydie", a))
	h.Expect(t, "holding")
	h.Kill()
	err := within(t, waited, "Wait after the notifier died holding the mutex")
	if !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("Wait = %v, want ErrOwnerDead", err)
	}
	if err := a.C.MarkConsistent(); err != nil {
		t.Fatalf("MarkConsistent: %v (the Mutex is not held)", err)
	}
	if err := a.C.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestConditionMisuse: Wait and Notify without the Mutex, a negative
// count, a Mutex not marked consistent, and a closed handle.
func TestConditionMisuse(t *testing.T) {
	c := heapCondition(t)
	if err := c.Wait(t.Context()); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("Wait unlocked = %v, want ErrNotLocked", err)
	}
	if err := c.Notify(1); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("Notify unlocked = %v, want ErrNotLocked", err)
	}
	c.Lock()
	if err := c.Notify(-1); !errors.Is(err, os.ErrInvalid) {
		t.Fatalf("Notify(-1) = %v, want os.ErrInvalid", err)
	}
	c.Unlock()
	// A dead holder's lock word: taken over inconsistent.
	lockWord(c.mem).Store(deadToken(t))
	if err := c.Lock(); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("Lock = %v, want ErrOwnerDead", err)
	}
	if err := c.Wait(t.Context()); !errors.Is(err, ErrOwnerDead) || c.Waiting() != 0 {
		t.Fatalf("Wait on an inconsistent Mutex = %v (%d counted in), want ErrOwnerDead and 0", err, c.Waiting())
	}
	c.MarkConsistent()
	waited := make(chan error, 1)
	go func() { waited <- c.Wait(context.Background()) }()
	asleepIn(t, 1, "(*Condition).sleep")
	c.Close()
	if err := within(t, waited, "Wait after Close"); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Wait after Close = %v, want os.ErrClosed", err)
	}
	if n := c.Waiting(); n != 0 {
		t.Fatalf("%d counted in after Close", n)
	}
}

// TestConditionCorrupt: more signals than waiters is ErrCorrupt.
func TestConditionCorrupt(t *testing.T) {
	seg, _ := shm.NewHeap(ConditionSize)
	u64(seg.Bytes(), offCondCounts).Store(joinCounts(1, 2))
	if _, err := ConditionAt(seg, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ConditionAt = %v, want ErrCorrupt", err)
	}
}

// TestConditionCorruptWhileWaiting: counts corrupted under a sleeping
// waiter (no waiters, signals pending) make Notify return ErrCorrupt and
// wake the waiter, which returns ErrCorrupt with the Mutex held, rather
// than sleeping on until its deadline; a new Wait refuses at once.
func TestConditionCorruptWhileWaiting(t *testing.T) {
	c := heapCondition(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	done := make(chan error)
	go func() {
		c.Lock()
		err := c.Wait(ctx)
		done <- errors.Join(err, c.Unlock())
	}()
	waitCounted(t, c, 1)
	mustDo(t, c, func() error {
		c.counts.Store(joinCounts(0, 3))
		if err := c.Notify(1); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Notify on corrupt counts = %v, want ErrCorrupt", err)
		}
		return nil
	})
	if err := <-done; !errors.Is(err, ErrCorrupt) || ctx.Err() != nil {
		t.Errorf("Wait under corrupt counts = %v (ctx %v), want ErrCorrupt before the deadline", err, ctx.Err())
	}
	c.counts.Store(joinCounts(1<<32-1, 0))
	mustDo(t, c, func() error {
		if err := c.Wait(ctx); !errors.Is(err, ErrCorrupt) || c.Waiting() != 1<<32-1 {
			t.Errorf("Wait on corrupt counts = %v, %d waiters, want ErrCorrupt, unchanged", err, c.Waiting())
		}
		return nil
	})
}

// TestConditionWaitForPanics: a predicate that panics after a wake-up
// leaves the Mutex held by the caller (whose deferred Unlock releases it)
// and nothing counted in, so the next waiter and notifier work as before.
func TestConditionWaitForPanics(t *testing.T) {
	c := heapCondition(t)
	calls := 0
	func() {
		c.Lock()
		defer c.Unlock()
		defer func() {
			if r := recover(); r != "pred" {
				t.Errorf("recovered %v, want pred's panic", r)
			}
			if err := c.held("test"); err != nil || c.Waiting() != 0 {
				t.Errorf("after pred panicked: held = %v, %d waiters, want held and none", err, c.Waiting())
			}
		}()
		go func() { // notifies once WaitFor waits and unlocks
			if err := c.Do(t.Context(), func() error { return c.Notify(1) }); err != nil {
				t.Error(err)
			}
		}()
		c.WaitFor(t.Context(), func() bool {
			if calls++; calls == 2 {
				panic("pred")
			}
			return false
		})
	}()
	if ok, err := c.Mutex().TryLock(); !ok || err != nil {
		t.Fatalf("TryLock after WaitFor's pred panicked = %v, %v", ok, err)
	}
	c.Unlock()
}

// TestConditionCancelRacesNotifyTwoWaiters: waiter A's ctx ends and, as it
// gives up, Notify(1) comes while waiter B sleeps: exactly one of them
// returns notified (A with nil, or B), and if it was A, B still gets the
// next Notify(1). Nothing is left counted in.
func TestConditionCancelRacesNotifyTwoWaiters(t *testing.T) {
	for range 20 {
		c := heapCondition(t)
		b := make(chan error, 1)
		bctx, bcancel := context.WithCancel(t.Context())
		go func() {
			c.Lock()
			err := c.Wait(bctx)
			b <- errors.Join(err, c.Unlock())
		}()
		waitCounted(t, c, 1)
		condHooks.gaveUp = func() {
			condHooks.gaveUp = nil
			mustDo(t, c, func() error { return c.Notify(1) })
		}
		actx, acancel := context.WithCancel(t.Context())
		c.Lock()
		go func() { waitCounted(t, c, 2); acancel() }()
		aerr := c.Wait(actx)
		c.Unlock()
		condHooks.gaveUp = nil
		if aerr == nil { // A took the signal: B sleeps on until the next Notify
			if n := c.Waiting(); n != 1 {
				t.Fatalf("A notified, %d counted in, want B's 1", n)
			}
			mustDo(t, c, func() error { return c.Notify(1) })
		} else if !errors.Is(aerr, context.Canceled) {
			t.Fatalf("A = %v, want nil or context.Canceled", aerr)
		}
		if err := within(t, b, "B (notified, by the racing Notify if A gave up)"); err != nil {
			t.Fatalf("B = %v (A %v): the notification was lost", err, aerr)
		}
		bcancel()
		if w, s := splitCounts(c.counts.Load()); w != 0 || s != 0 {
			t.Fatalf("%d waiters and %d signals left, want none", w, s)
		}
	}
}

// TestConditionCloseRacesWait closes a handle at every point of a Wait on
// it: the Wait returns, and never leaves itself counted in (a leaked
// count would turn a later Notify into a signal nobody takes).
func TestConditionCloseRacesWait(t *testing.T) {
	for i := range 200 {
		seg, err := shm.NewHeap(ConditionSize)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := ConditionAt(seg, 0)
		watch, _ := ConditionAt(seg, 0)
		done := make(chan error, 1)
		go func() {
			if err := c.Lock(); err != nil {
				done <- err
				return
			}
			done <- c.Wait(context.Background())
		}()
		for range i % 50 {
			runtime.Gosched()
		}
		c.Close()
		if err := within(t, done, "Wait racing Close"); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Wait racing Close = %v, want os.ErrClosed", err)
		}
		if n := watch.Waiting(); n != 0 {
			t.Fatalf("round %d: %d waiters left counted in after Close", i, n)
		}
		watch.Close()
	}
}
