package ipcqueue

import _ "unsafe" // for go:linkname

// procyield executes the CPU's spin-wait hint (PAUSE on amd64, YIELD on
// arm64) cycles times: the runtime's own spin primitive, which it exports
// for linkname. Spinning with it leaves the polled cache line alone long
// enough for the other side to finish writing it.
//
//go:linkname procyield runtime.procyield
func procyield(cycles uint32)
