package semaphore

import (
	"errors"

	"github.com/ipckit/ipckit/internal/sentinel"
)

// Errors shared with every ipckit package: the same values, so errors.Is
// matches them under any package's name.
var (
	// ErrOwnerDead means the previous holder died holding the lock. The
	// caller now holds it; see the package doc, "Owner death".
	ErrOwnerDead = sentinel.ErrOwnerDead
	// ErrNotRecoverable means a holder unlocked an inconsistent lock without
	// MarkConsistent; the lock was not acquired and never will be.
	ErrNotRecoverable = sentinel.ErrNotRecoverable
	// ErrCorrupt means shared memory (an object's words or a lock file's
	// record) does not hold what it should: a wrong magic number, a count
	// or index that cannot be, a lock word that names nobody, or a size
	// that does not fit its segment.
	ErrCorrupt = sentinel.ErrCorrupt
	// ErrNotLocked means Unlock, UnlockShared or MarkConsistent was called on a
	// lock that is not held.
	ErrNotLocked = sentinel.ErrNotLocked
	// ErrNotOwner means a process unlocked a lock that another process holds.
	ErrNotOwner = sentinel.ErrNotOwner
)

// Errors of this package. Bad arguments (a size, offset, count or value out
// of range, a file that is not a lock file) wrap [os.ErrInvalid] instead.
var (
	// ErrTooManyReleases means a bounded semaphore was released more times
	// than it was acquired, or an unbounded one beyond its maximum value.
	ErrTooManyReleases = errors.New("semaphore: released too many times")
	// ErrTooManyHolders means a semaphore's table of holder records is full.
	ErrTooManyHolders = errors.New("semaphore: too many processes hold permits")
	// ErrBroken means a barrier was broken: a party died, gave up or aborted.
	ErrBroken = errors.New("semaphore: barrier is broken")
)
