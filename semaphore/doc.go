// Package semaphore provides process-shared locks and synchronisation
// primitives that survive the death of a participant: Python's
// multiprocessing Lock, Semaphore, BoundedSemaphore, Event, Barrier and
// Condition, and Value and Array with their lock, for Go processes on
// Linux.
//
//   - [Mutex] is a futex-based lock in shared memory. Uncontended, Lock and
//     Unlock are one compare-and-swap each. A holder killed while holding it
//     is detected by its waiters (see "Owner death") and the lock is handed
//     to one of them with [ErrOwnerDead]. [Mutex.Do] is Python's
//     `with lock:` in one call.
//   - [FileMutex] is a lock on a file (flock(2)), exclusive (Lock) or
//     shared among readers (LockShared: a reader lock, not Python's
//     re-entrant RLock, which ipckit does not have; see the README); the
//     kernel releases it when its holder dies, and a holder record in the
//     file itself tells the next holder, with [ErrOwnerDead].
//   - [Semaphore] is a counting semaphore, optionally bounded; permits held
//     by a process that died come back.
//   - [Event] is a flag processes can wait for; [Barrier] makes n parties
//     wait for each other, and breaks with [ErrBroken] for all of them when
//     one dies or gives up.
//   - [Condition] is a condition variable with its own Mutex: Wait,
//     WaitFor, Notify and NotifyAll, with no lost notification.
//   - [Locked] is an shm.Array with the Mutex that guards it, in one
//     segment: Python's Value and Array with get_lock().
//
// # Owner death
//
// [Mutex] and [FileMutex] follow POSIX robust mutexes. When the holder of a
// lock dies, the next Lock (or LockContext, TryLock) acquires it and returns
// [ErrOwnerDead]: the caller holds the lock, and the data it guards may be
// half-updated. The caller should repair that data and call MarkConsistent
// before Unlock. Until MarkConsistent, the lock is "inconsistent": if the new
// holder dies too, the next one gets [ErrOwnerDead] again. If the holder
// unlocks without MarkConsistent, the lock becomes unrecoverable: every later
// Lock fails with [ErrNotRecoverable] and does not acquire it, so nobody
// works on data that nobody repaired. Use errors.Is to test for both.
//
// How a holder is known to be dead. Every process that holds a Mutex, a
// guard, a permit or a place at a Barrier is named by its liveness token:
// a lock the kernel keeps on one byte of a per-user registry file,
// /dev/shm/.ipckit-live-<uid>, for exactly as long as the process lives
// (the file stays in place, like the sem.* files of POSIX semaphores).
// Every process sees that lock alike, whatever its PID namespace, so a
// holder in another container that shares /dev/shm is never taken for
// dead. A waiter follows the holder it waits for, and the kernel wakes it
// the moment the holder dies; and every wait with a deadline, however
// short, looks at the holder once more before it gives up, so a dead
// holder is reported with [ErrOwnerDead] (for a Semaphore, the permit
// taken; for a Barrier, [ErrBroken]), never as a timeout. A holder whose
// liveness cannot be proven (its registry cannot be read) is treated as
// alive: its waiters wait, and nothing is taken from it. A lock word that
// names nobody at all is [ErrCorrupt].
//
// # Errors
//
// [ErrOwnerDead], [ErrNotRecoverable] and [ErrCorrupt] are the same values
// in every ipckit package. A bad argument (a count, value, offset or size
// out of range, a path that is not a lock file) is an error that wraps
// [os.ErrInvalid] and names the value; shared memory that cannot hold what
// it should (a wrong magic number, an impossible count) is [ErrCorrupt].
//
// # Sharing
//
// Every object lives in a shared-memory segment from package shm: its own
// (New..., anonymous; Create.../Open..., named, where Create... takes a
// *shm.Options for the segment's mode and Open... only the name) or, with
// the ...At functions, at an offset of a segment the caller owns (a heap
// segment from shm.NewHeap works too, for tests under the race detector);
// Segment and Offset say where. An object passes to a child process started
// by spawn as a small handle: it implements gob.GobEncoder and
// gob.GobDecoder, and the decoded object is attached to the same memory.
//
// # Closing
//
// Close releases the handle's mapping (for objects that own their segment)
// and is safe to call twice. Calls blocked in this process return
// [os.ErrClosed]; other calls must not run concurrently with Close. Close
// does not release a lock or permit the process holds: other processes see
// it held until this process releases it or exits.
package semaphore
