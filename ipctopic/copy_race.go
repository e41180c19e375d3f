//go:build race

package ipctopic

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// Under the overwrite policy a publisher may rewrite a slot's payload while
// a subscriber copies it out, which the subscriber's second look at the
// stamp detects ("Overwrite policy" in layout.go): a data race by design
// that the race detector would report. So race builds copy payloads with
// 8-byte atomic loads and stores, which it accepts, and keep the plain
// copies of other builds honest everywhere else.

const raceEnabled = true

// copyIn writes msg at the start of a slot's payload p (8-aligned, at least
// len(msg) rounded up to 8 long), a word at a time.
func copyIn(p, msg []byte) {
	var w [8]byte
	for i := 0; i < len(msg); i += 8 {
		clear(w[:])
		copy(w[:], msg[i:])
		(*atomic.Uint64)(unsafe.Pointer(&p[i])).Store(binary.LittleEndian.Uint64(w[:]))
	}
}

// copyOut copies the message at the start of payload p (cut to its length,
// with capacity rounded up to 8) into dst, a word at a time.
func copyOut(dst, p []byte) {
	var w [8]byte
	for i := 0; i < len(p); i += 8 {
		binary.LittleEndian.PutUint64(w[:], (*atomic.Uint64)(unsafe.Pointer(&p[i : i+8 : i+8][0])).Load())
		copy(dst[i:], w[:])
	}
}
