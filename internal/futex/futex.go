// Package futex is the one place in ipckit that issues futex system calls.
//
// Every futex here is shared (never FUTEX_PRIVATE_FLAG), so a word in a
// MAP_SHARED mapping can be waited on and woken from different processes.
// Callers must treat every return of [Wait] as possibly spurious and re-check
// the state they wait for.
package futex

import (
	"context"
	"errors"
	"time"
)

// ErrTimeout is returned by [Wait] when the timeout expired before a wake.
var ErrTimeout = errors.New("futex: timed out")

// Forever is the timeout that makes [Wait] wait without a limit.
const Forever time.Duration = -1

// cancelSlice bounds one sleep of [WaitContext], and so the delay of a
// cancellation that races with going to sleep.
const cancelSlice = 20 * time.Millisecond

// WaitContext is [Wait] that also returns early, with ctx.Err(), when ctx is
// done. Cancellation wakes every waiter on addr, which the others see as a
// spurious wake-up; a context that can never be cancelled costs nothing
// extra. A cancellable wait sleeps at most 20 ms per call and returns nil
// when that slice, not the caller's timeout, runs out.
func WaitContext(ctx context.Context, addr *uint32, val uint32, timeout time.Duration) error {
	if ctx.Done() == nil {
		return Wait(addr, val, timeout)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// A cancel that lands between the check above and the sleep below wakes
	// nobody, so a cancellable wait sleeps in bounded slices.
	sliced := timeout < 0 || timeout > cancelSlice
	if sliced {
		timeout = cancelSlice
	}
	stop := context.AfterFunc(ctx, func() { Wake(addr, 0) })
	err := Wait(addr, val, timeout)
	stop()
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if sliced && errors.Is(err, ErrTimeout) {
		return nil
	}
	return err
}
