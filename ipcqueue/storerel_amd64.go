//go:build amd64 && !race

package ipcqueue

import (
	"sync/atomic"
	"unsafe"
)

// storeRel is a release store (Agrona's putLongOrdered, the runtime's
// StoreRel): on amd64 (TSO) a plain aligned MOV, which unlike
// atomic.Store's XCHG does not wait for the store buffer to drain. It is
// not ordered before later loads: callers that need store-load order
// (the wake-up protocols) issue a full fence (an atomic add) after it.
// Under the race detector, storeRel is atomic.Store, which it understands.
func storeRel(p *atomic.Uint64, v uint64) {
	*(*uint64)(unsafe.Pointer(p)) = v
}
