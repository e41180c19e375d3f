package robust

import "errors"

// Errors of this package. The ones every ipckit package shares
// (sentinel.ErrOwnerDead, ErrNotRecoverable, ErrCorrupt) come from
// internal/sentinel.
var (
	// ErrNotLocked means Unlock or MarkConsistent was called on a lock
	// that is not held.
	ErrNotLocked = errors.New("ipckit: lock is not held")
	// ErrNotOwner means a process unlocked a lock another process holds.
	ErrNotOwner = errors.New("ipckit: lock is held by another process")
)
