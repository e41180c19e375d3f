//go:build !linux

package futex

import (
	"errors"
	"time"
)

// Wait is not supported on this platform.
func Wait(addr *uint32, val uint32, timeout time.Duration) error { return errors.ErrUnsupported }

// Wake is not supported on this platform.
func Wake(addr *uint32, n int) (int, error) { return 0, errors.ErrUnsupported }

// Supported reports whether futexes work on this platform.
func Supported() error { return errors.ErrUnsupported }
