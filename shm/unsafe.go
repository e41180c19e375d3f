package shm

import (
	"sync/atomic"
	"unsafe"
)

// This file holds every unsafe cast of the package: from bytes of a
// segment to the words that live there. Callers check bounds and alignment
// first (see [Segment.span]).

func stateWord(mem []byte) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&mem[offState]))
}

func ptrAt[T any](b []byte, off int) *T {
	return (*T)(unsafe.Pointer(&b[off]))
}

func sliceAt[T any](b []byte, off, n int) []T {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[off])), n)
}

// aligned reports whether &b[off] is a multiple of align.
func aligned(b []byte, off, align int) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%uintptr(align) == 0 && off%align == 0
}

// heapBytes returns n zeroed bytes aligned to 64, on the Go heap.
func heapBytes(n int) []byte {
	words := make([]uint64, (n+63)/8+8)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	skip := int(-uintptr(unsafe.Pointer(&b[0])) & 63)
	return b[skip : skip+n : skip+n]
}

func floatBits(p *float64) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(p)) }

func float32Bits(p *float32) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(p)) }

// wordOf returns the aligned 32-bit word that holds the byte at p, and the
// bit offset of that byte in it (both platforms are little-endian). The
// word may reach up to 3 bytes past an object that ends at a segment's
// end, and stays in memory the segment owns: a mapping goes on to its
// page's end; a heap segment's Go object (heapBytes) goes on at least 64
// bytes past its end, and any Go heap object is an 8-aligned slot of a
// multiple of 8 bytes, which holds every aligned word that holds one of
// its bytes. So a narrow update never touches another Go object, which
// checkptr and the race detector check (TestNarrowAtHeapEnd).
func wordOf(p unsafe.Pointer) (*atomic.Uint32, uint32) {
	skew := int(uintptr(p) & 3)
	return (*atomic.Uint32)(unsafe.Add(p, -skew)), uint32(skew) * 8
}
