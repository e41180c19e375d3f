package ipctopic

import (
	"errors"
	"fmt"
	"os"

	"github.com/ipckit/ipckit/internal/sentinel"
)

// Errors returned by topics. A bad argument to a constructor wraps
// [os.ErrInvalid] and says which value was wrong; a call on a closed handle
// returns an error wrapping [os.ErrClosed]; a cancelled wait, ctx.Err().
var (
	// ErrShutdown is returned by Publish and Subscribe once the topic is
	// shut down (by any process) with [Topic.Shutdown]. It is the same
	// value in every ipckit package.
	ErrShutdown = sentinel.ErrShutdown
	// ErrCorrupt means the topic's control block, a stamp, a length, a
	// cursor or an owner word read from shared memory is impossible
	// (corrupted or hostile). It is the same value in every ipckit package.
	ErrCorrupt = sentinel.ErrCorrupt
	// ErrTooLarge means a message is longer than the topic's maximum
	// message size ([Topic.MaxMsg]); nothing was published.
	ErrTooLarge = errors.New("ipctopic: message larger than the maximum message size")
	// ErrFull means every subscriber slot is taken by a live process:
	// Subscribe cannot join.
	ErrFull = errors.New("ipctopic: every subscriber slot is taken")
	// ErrLagged is what a [*LaggedError] matches with errors.Is.
	ErrLagged = errors.New("ipctopic: subscriber lagged")
)

// LaggedError is returned by [Subscriber.Recv] and [Subscriber.Read] under
// the [Overwrite] policy when messages the subscriber had not read were
// overwritten: Missed says exactly how many. The subscriber has moved on to
// the oldest message still held, which the next call returns (as tokio's
// broadcast RecvError::Lagged). It matches [ErrLagged].
type LaggedError struct {
	Missed uint64 // messages skipped, never to be delivered to this subscriber
}

// Error says how many messages were missed.
func (e *LaggedError) Error() string {
	return fmt.Sprintf("ipctopic: subscriber lagged: %d messages missed", e.Missed)
}

// Unwrap returns [ErrLagged].
func (e *LaggedError) Unwrap() error { return ErrLagged }

// errClosed is what a call on a closed handle returns.
var errClosed = fmt.Errorf("ipctopic: handle closed: %w", os.ErrClosed)
