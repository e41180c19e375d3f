//go:build !linux

package semaphore

import "errors"

// supported reports whether the shared-memory primitives work here: they
// need futexes and /proc, so only on Linux.
func supported() error { return errors.ErrUnsupported }
