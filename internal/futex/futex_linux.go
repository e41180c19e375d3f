//go:build linux

package futex

import (
	"fmt"
	"math"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// futex(2) operations, without FUTEX_PRIVATE_FLAG so they work across processes.
const (
	opWait = 0 // FUTEX_WAIT
	opWake = 1 // FUTEX_WAKE
)

// Wait sleeps while *addr == val, for at most timeout (or [Forever] if
// timeout is negative). It returns nil when woken, when *addr no longer held
// val at the time of the call (EAGAIN), or on a spurious wake-up; it returns
// [ErrTimeout] when the time ran out. EINTR restarts the wait with the time
// that is left.
func Wait(addr *uint32, val uint32, timeout time.Duration) error {
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		var tsp *unix.Timespec
		if timeout >= 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return ErrTimeout
			}
			ts := unix.NsecToTimespec(left.Nanoseconds())
			tsp = &ts
		}
		_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWait,
			uintptr(val), uintptr(unsafe.Pointer(tsp)), 0, 0)
		switch errno {
		case 0, unix.EAGAIN:
			return nil
		case unix.EINTR:
			continue
		case unix.ETIMEDOUT:
			return ErrTimeout
		default:
			return fmt.Errorf("futex: wait: %w", errno)
		}
	}
}

// Wake wakes at most n waiters on addr (all of them if n <= 0) and returns
// how many it woke.
func Wake(addr *uint32, n int) (int, error) {
	if n <= 0 || n > math.MaxInt32 {
		n = math.MaxInt32
	}
	r, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWake,
		uintptr(n), 0, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("futex: wake: %w", errno)
	}
	return int(r), nil
}

// Supported reports whether futexes work on this platform.
func Supported() error { return nil }
