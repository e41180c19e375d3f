package semaphore

import (
	"sync/atomic"
	"unsafe"
)

// This file holds every unsafe cast of the package: from bytes of a segment
// to the atomic words that live there. Callers check bounds and alignment
// first (see place).

func u32(b []byte, off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&b[off])) }

func u64(b []byte, off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&b[off])) }

// addr returns the futex address of w.
func addr(w *atomic.Uint32) *uint32 { return (*uint32)(unsafe.Pointer(w)) }

// aligned8 reports whether &b[0] is a multiple of 8.
func aligned8(b []byte) bool { return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%8 == 0 }
