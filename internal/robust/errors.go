package robust

import "github.com/ipckit/ipckit/internal/sentinel"

// Errors of this package, from internal/sentinel like the others every
// ipckit package shares (sentinel.ErrOwnerDead, ErrNotRecoverable,
// ErrCorrupt), so that errors.Is matches them under any package's name.
var (
	// ErrNotLocked means Unlock or MarkConsistent was called on a lock
	// that is not held.
	ErrNotLocked = sentinel.ErrNotLocked
	// ErrNotOwner means a process unlocked a lock another process holds.
	ErrNotOwner = sentinel.ErrNotOwner
)
