// Package ipcmap is a hash map of byte keys and byte values in shared
// memory, safe against the death of any process using it: ipckit's answer
// to Python's multiprocessing.Manager().dict(), without a server process.
//
// A [Map] lives in a segment: named ([Create], [Open]), anonymous ([New],
// passed to children started by spawn in their argument) or on the Go
// heap ([NewHeap], one process only, visible to the race detector).
// [Typed] puts keys of a string or byte-slice type and values of any Go
// type on top of it.
//
//	m, _ := ipcmap.New(&ipcmap.Options{Entries: 1000, Bytes: 1 << 20})
//	m.Set(ctx, []byte("k"), []byte("v"))
//	v, ok, _ := m.Get([]byte("k"))
//
// # Capacity
//
// A map's capacity is fixed when it is created, and the map never grows:
// [Options.Entries] keys at most, and [Options.Bytes] of room for their
// keys and values. An entry takes 8 bytes, plus its key rounded up to 8,
// plus its value, all rounded up to 16, in one contiguous run. A write
// that needs more than is left fails with [ErrFull] and changes nothing.
// Freed runs merge with their free neighbours, but records are never
// moved: after many writes of mixed sizes, a long value may find no run
// long enough while as many bytes are free in shorter ones, and also fail
// with ErrFull ([Stats] shows the bytes in use). Give a map of values of
// mixed sizes some slack, or keep its values of one size. Growing by
// remapping a larger segment is a possible later step.
//
// # Readers and writers
//
// [Map.Get], [Map.AppendValue], [Map.Range], [Map.Len] and [Map.Check] take
// no lock and write nothing: they never block a writer, never see a torn
// value (a value is whole, the old one or the new one), and a reader that
// dies changes nothing. Writes ([Map.Set], [Map.Delete],
// [Map.CompareAndSwap], [Map.LoadOrStore]) take one robust lock, held for
// the write alone; they wait only for another writer, and take a context
// for that wait.
//
// # Crash safety
//
// A writer killed at any step of a write leaves the map with the old
// value or the new one, never a mix: each write is published by one
// atomic store. The next writer takes the lock over (the kernel reports
// the death at once, in any PID namespace: see internal/liveness),
// repairs what the dead one left (a record it allocated but never
// published, counters it did not update), does its own write and returns
// its results with an error matching [ErrOwnerDead]; [Stats.Deaths] counts
// such repairs. A writer killed inside the repair leaves it to the next
// one, which repairs from the start. Readers need no repair.
//
// # Errors
//
// [ErrFull] and [ErrTooLarge] are this package's; [ErrOwnerDead] and
// [ErrCorrupt] are the values every ipckit package shares. A bad
// constructor argument wraps [os.ErrInvalid], a call on a closed handle
// [os.ErrClosed], a cancelled wait for the lock returns ctx.Err(). Shared
// memory that holds something impossible (every offset and length read
// from it is checked) is ErrCorrupt, never a panic or a read out of the
// map's bounds.
package ipcmap
