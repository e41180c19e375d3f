//go:build amd64 && !race

package release

import (
	"sync/atomic"
	"unsafe"
)

// On amd64 (TSO) an aligned MOV is a release store (as Agrona's
// putLongOrdered, or the runtime's StoreRel); the compiler does not move it
// before the memory operations that precede it in this goroutine.
func store64(p *atomic.Uint64, v uint64) { *(*uint64)(unsafe.Pointer(p)) = v }
