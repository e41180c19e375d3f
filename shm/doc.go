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
// atomic operations, and [Array] holds many; each sits in a segment of its
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
package shm
