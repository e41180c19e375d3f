package ipcqueue

import "errors"

// Errors returned by the queue.
var (
	// ErrClosed is returned by Put and its kin once the queue is closed
	// (by any process) with [Queue.Close].
	ErrClosed = errors.New("ipcqueue: queue closed")
	// ErrTooLarge means a message is longer than the queue's maximum
	// message size; nothing was written.
	ErrTooLarge = errors.New("ipcqueue: message larger than the maximum message size")
	// ErrCorrupt means the queue's control block, an index or a record
	// header read from shared memory is impossible (corrupted or hostile).
	ErrCorrupt = errors.New("ipcqueue: corrupt queue")
	// ErrDetached means the handle was used after [Queue.Detach].
	ErrDetached = errors.New("ipcqueue: handle detached")
	// ErrSize means a size or option given to a constructor is out of range,
	// or a Typed value's encoding does not fit.
	ErrSize = errors.New("ipcqueue: invalid size")
)

// errBusy is internal: a Try call found the lock busy.
var errBusy = errors.New("ipcqueue: busy")
