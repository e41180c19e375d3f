package ipcqueue

import (
	"errors"

	"github.com/ipckit/ipckit/internal/sentinel"
)

// Errors returned by the queue.
var (
	// ErrShutdown is returned by Put and its kin once the queue is shut down
	// (by any process) with [Queue.Shutdown]. It is the same error in every
	// ipckit package.
	ErrShutdown = sentinel.ErrShutdown
	// ErrTooLarge means a message is longer than the queue's maximum
	// message size; nothing was written.
	ErrTooLarge = errors.New("ipcqueue: message larger than the maximum message size")
	// ErrCorrupt means the queue's control block, an index or a record
	// header read from shared memory is impossible (corrupted or hostile).
	ErrCorrupt = errors.New("ipcqueue: corrupt queue")
	// ErrSize means a size or option given to a constructor is out of range,
	// or a Typed value's encoding does not fit.
	ErrSize = errors.New("ipcqueue: invalid size")
)

// errBusy is internal: a Try call found the lock busy.
var errBusy = errors.New("ipcqueue: busy")
