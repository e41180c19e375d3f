package ipcqueue

import _ "unsafe" // for go:linkname

// The runtime's own primitives, which it exports for linkname and promises
// to keep (go.dev/issue/67401).

// procyield executes the CPU's spin-wait hint (PAUSE on amd64, YIELD on
// arm64) cycles times: the runtime's own spin primitive. Spinning with it
// leaves the polled cache line alone long enough for the other side to
// finish writing it.
//
//go:linkname procyield runtime.procyield
func procyield(cycles uint32)

// procPin pins the calling goroutine to its P, which it returns the id of:
// until procUnpin it is neither preempted nor moved to another P (sync.Pool
// uses it the same way). See guard.go.
//
//go:linkname procPin runtime.procPin
func procPin() int

// procUnpin undoes procPin.
//
//go:linkname procUnpin runtime.procUnpin
func procUnpin()
