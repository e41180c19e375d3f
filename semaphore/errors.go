package semaphore

import "errors"

var (
	// ErrOwnerDead means the previous holder died holding the lock. The
	// caller now holds it; see the package doc, "Owner death".
	ErrOwnerDead = errors.New("semaphore: previous owner died holding the lock")
	// ErrNotRecoverable means a holder unlocked an inconsistent lock without
	// MarkConsistent; the lock was not acquired and never will be.
	ErrNotRecoverable = errors.New("semaphore: lock is not recoverable")
	// ErrNotLocked means Unlock, RUnlock or MarkConsistent was called on a
	// lock that is not held.
	ErrNotLocked = errors.New("semaphore: not locked")
	// ErrNotOwner means a process unlocked a lock that another process holds.
	ErrNotOwner = errors.New("semaphore: lock held by another process")
	// ErrTooManyReleases means a bounded semaphore was released more times
	// than it was acquired.
	ErrTooManyReleases = errors.New("semaphore: released too many times")
	// ErrTooManyHolders means a semaphore's table of holder records is full.
	ErrTooManyHolders = errors.New("semaphore: too many processes hold permits")
	// ErrBroken means a barrier was broken: a party died, gave up or aborted.
	ErrBroken = errors.New("semaphore: barrier is broken")
	// ErrLayout means shared memory does not hold the object it should:
	// wrong size, offset, magic number or an impossible value.
	ErrLayout = errors.New("semaphore: bad shared layout")
	// ErrLockFile means a file is not a FileMutex lock file.
	ErrLockFile = errors.New("semaphore: not a lock file")
)
