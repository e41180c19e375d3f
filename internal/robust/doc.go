// Package robust is ipckit's one robust process-shared lock and its one way
// of waiting, used by the queue's locks, the semaphore package's Mutex and
// guards, and the catalog.
//
// A [Lock] lives in shared memory (a mapping, or a heap buffer under the race
// detector): a 64-bit lock word that names its holder by a liveness token
// (package internal/liveness), and a 32-bit sleepers word. Uncontended, Lock
// and Unlock are one atomic read-modify-write each. A holder that dies, even
// by SIGKILL, even in another PID namespace, is found by its waiters within
// about [CheckPeriod], and before any of them gives up on a deadline; one of
// them takes the lock over and is told so with sentinel.ErrOwnerDead. A live
// holder is never robbed: a holder whose liveness cannot be proven is waited
// for.
//
// [Wait] and [Wake] are the same sleep protocol for any other condition in
// shared memory (a queue's data, a semaphore's permits), and [Spinner] is the
// adaptive spin that comes before a sleep. Waits keep their deadlines to the
// kernel's timer slack, wake promptly on cancellation and on a handle's
// [Closer.Close], and sleep with no timeout at all when no holder needs
// watching.
//
// The designs are in the files: "Robust lock" (lock.go), "Waiting"
// (wait.go), "Adaptive spinning" (spin.go).
package robust
