package ipcqueue

import (
	"errors"
	"fmt"
	"os"

	"github.com/ipckit/ipckit/internal/sentinel"
)

// Errors returned by the queue. A bad argument to a constructor (a size or
// a maximum message out of range) is not one of them: its error wraps
// [os.ErrInvalid] and says which value was wrong. A call on a closed handle
// returns an error wrapping [os.ErrClosed].
var (
	// ErrShutdown is returned by Put and its kin once the queue is shut down
	// (by any process) with [Queue.Shutdown]. It is the same value in every
	// ipckit package.
	ErrShutdown = sentinel.ErrShutdown
	// ErrTooLarge means a message is longer than the queue's maximum
	// message size (see [Queue.MaxMsg]), or a batch larger than the queue
	// can ever hold ([Queue.PutBatch]); nothing was written. A [Typed]
	// queue whose fixed-size values are longer than that is refused with it
	// too.
	ErrTooLarge = errors.New("ipcqueue: message larger than the maximum message size")
	// ErrCorrupt means the queue's control block, an index or a record
	// header read from shared memory is impossible (corrupted or hostile),
	// or a [Typed] message does not decode as a value. It is the same value
	// in every ipckit package.
	ErrCorrupt = sentinel.ErrCorrupt
	// ErrClaimEnded is returned by [Claim.Commit] on a claim already
	// committed or aborted (or the zero Claim); nothing was written.
	ErrClaimEnded = errors.New("ipcqueue: claim already committed or aborted")
)

// errClosed is what a call on a closed handle returns.
var errClosed = fmt.Errorf("ipcqueue: handle closed: %w", os.ErrClosed)

// errBusy is internal: a Try call found the lock busy.
var errBusy = errors.New("ipcqueue: busy")
