// Package liveness names processes by a token the kernel keeps alive for
// exactly as long as the process, and tells any observer, in any PID
// namespace, whether the process a token names is alive.
//
// A process claims its token once ([Self]): it takes a write lock, with
// F_OFD_SETLK, on one byte of a registry file in /dev/shm that belongs to its
// effective uid, and keeps the file open for the rest of its life. The
// kernel drops that lock when the process dies, however it dies (SIGKILL
// included), and every process that can open the registry sees the same lock
// state through F_OFD_GETLK, whatever its PID namespace, and under
// emulators that report a wrong start time in /proc. [Check] reads it: a
// token is [Alive], [Dead] or, where that cannot be proven, [Unknown]; a
// caller must never take anything away from a holder that is not [Dead].
//
// Tokens are 62-bit values (see [Token]) so that a lock word can hold one
// next to two flag bits. This package holds no shared memory of its own and
// knows nothing of locks: internal/robust builds the robust lock on it.
//
// See token.go ("Liveness tokens") for the design.
package liveness
