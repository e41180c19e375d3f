// Package shm provides shared-memory segments and the atomic values and
// arrays that live in them, for use by several processes at once.
//
// A [Segment] is either named, a file in /dev/shm that any process of the
// same user can open by name, or anonymous, a memfd that reaches other
// processes only through spawn and vanishes when the last process holding it
// exits, however it exits. Every segment ipckit creates starts with a
// versioned, checksummed header that [Open] validates; the caller's bytes,
// [Segment.Bytes], follow it.
//
// [Int32], [Int64], [Uint64] and [Float64] are single shared words with
// atomic operations, as are [Uint32] and [Float32]; [Int8], [Uint8],
// [Int16], [Uint16] and [Bool], narrower than any atomic instruction, are
// updated by compare-and-swap of the aligned 32-bit word that holds them
// (their neighbours untouched). [Array] holds many of any of these number
// types, with bulk copies atomic per element; each sits in a segment of its
// own or at an offset in one the caller owns ([Int64At], [ArrayAt]). All of
// them, and segments, can be passed to a child process started by spawn in
// its argument: they are encoded as small handles (names, or inherited
// descriptors for anonymous segments) and arrive attached to the same memory.
//
// A [Catalog] holds many named values in one segment, found or made by name
// from any process, like Boost's find_or_construct.
//
// A segment can also live on the Go heap ([NewHeap]). Nothing else can see
// it, but the race detector can, so the concurrent structures built on
// segments are tested there too.
//
// A mapped segment that another process truncates raises SIGBUS on access.
// Anonymous segments are sealed against it; for named ones, [Segment.Check]
// detects it and [Guard] turns the fault into an error.
//
// Errors: a bad argument (a name, size, offset, length or kind) is an error
// wrapping [os.ErrInvalid] that says which value was wrong; a missing or
// taken name wraps [os.ErrNotExist] or [os.ErrExist]; [Segment.Check] and
// GobEncode after Close wrap [os.ErrClosed]. Shared memory that does not
// hold what it should is [ErrCorrupt], the sentinel every ipckit package
// shares, or one of its kinds ([ErrBadMagic], [ErrChecksum], [ErrSize]),
// which match both.
package shm
