// Package sentinel holds the errors that mean the same thing in every ipckit
// package. Each public package re-exports the ones it returns under its own
// name (shm.ErrCorrupt, ipcqueue.ErrCorrupt, ...): they are the same values,
// so errors.Is matches any of those names.
package sentinel

import "errors"

var (
	// ErrCorrupt means shared memory does not hold what it should: a header,
	// an index, a record or a word is impossible (corrupted or hostile).
	ErrCorrupt = errors.New("ipckit: shared memory is corrupt")

	// ErrOwnerDead means the previous holder of a lock died holding it. The
	// caller now holds the lock and must repair what it guards.
	ErrOwnerDead = errors.New("ipckit: previous owner died holding the lock")

	// ErrNotRecoverable means a holder released an inconsistent lock without
	// marking it consistent: the lock can never be taken again.
	ErrNotRecoverable = errors.New("ipckit: lock is not recoverable")

	// ErrNotLocked means Unlock (or MarkConsistent) was called on a lock
	// that is not held.
	ErrNotLocked = errors.New("ipckit: lock is not held")

	// ErrNotOwner means a process unlocked a lock that another process
	// holds.
	ErrNotOwner = errors.New("ipckit: lock is held by another process")

	// ErrShutdown means the object was shut down for every process: no new work
	// or messages are taken.
	ErrShutdown = errors.New("ipckit: shut down")
)
