package ipcqueue

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Queue layout and algorithm
//
// The segment's payload holds a 1152-byte control block, then the ring of
// capacity C bytes (a power of two). Positions are free-running uint64 byte
// counters (they wrap at 2^64; all arithmetic is modulo 2^64); a position p
// lives at ring offset p & (C-1).
//
// Records. Each record starts at an 8-aligned position with an 8-byte
// header word, then its payload, padded to 8. The header word is
//
//	bits 63..32  tag: uint32(p >> 3), the record's own position
//	bit  31      committed (always set in a written header)
//	bit  30      padding: skip to the end of the ring
//	bits 29..0   payload length
//
// and a header word is either 0 ("nothing here yet") or a committed header
// whose tag matches its position: anything else is ErrCorrupt. There is no
// "claimed" state visible to consumers, so a dead producer can never leave
// a half-written record in their way.
//
// Producers (two-lock design). Put takes the producer lock (below), reads
// tail, checks space against head, and writes its record at tail: first it
// zeroes the header word just after the record (the terminator), then the
// payload, then stores the header word (the commit, a release store paired
// with the consumer's atomic load of that word), then stores tail and
// unlocks. A
// consumer therefore learns of a record from the record itself, never from
// tail: on the fast path the two sides share no index at all. A record that
// would cross the end of the ring is preceded by a padding record running
// to the end; the real record at offset 0 is committed before the padding,
// so a consumer that skips the padding finds a committed record.
//
// Why a producer's death is harmless. Everything a producer writes before
// its commit lies beyond tail in free space, and the word at tail is 0
// (the previous record's terminator), so consumers see nothing. The next
// process to take the lock finds the holder dead (pid plus start time),
// advances tail over any record the dead producer did commit, and counts a
// message dropped if it committed none. Garbage the dead producer left in
// free space is never read: a consumer reads only header words that a
// terminator zeroed or a commit wrote.
//
// Consumers take the consumer lock, load the header at head, copy the
// payload, store head (the single point at which the message is taken:
// pairs with the producer's load of head before reusing the space) and
// unlock. A consumer that finds the ring empty waits holding the lock (the
// others could not take anything either), so the word it polls is always
// the next header, never payload a producer is writing a lap later. A consumer killed before that store leaves the record for the
// next one; after it, the message is gone with it. Head publication costs
// one store to a line only consumers use. Producers see the free space
// through a second, lazy copy of head, freed, which a consumer publishes
// only every capacity/8 bytes, when the queue runs empty, or when a
// producer sleeps for space: so a producer waiting on a full ring polls a
// word that changes a few times per lap rather than on every message (the
// cache-line ping-pong that otherwise halves throughput). Before it sleeps
// or gives up (TryPut), a producer reads head itself, so laziness never
// makes Put wait or TryPut fail while there is room.
//
// Ordering. The commit, tail, head, freed and unlock stores of the hot
// paths are release stores (internal/release: a plain MOV on amd64, like
// Agrona's putLongOrdered), so a Put or Get does not stall draining its
// store buffer at each of them; each operation then makes one atomic add
// (its puts or gets counter), a full fence, before it loads the futex
// words to decide whether to wake anyone: that fence is what the
// Dekker-style wake-up protocol of wait.go needs. (Side effect: a process
// killed between its unlock and that add leaves Puts or Gets one short, so
// Len one off; nothing else.) So a Put makes two locked instructions, the
// lock's CAS and this add, and so does a Get; a bare ring making the same
// runs no faster than the queue here (BENCHMARKS.md, raw_ring_lock_add),
// and only rings making one beat a channel. Moving the fence to the sleepers,
// each calling membarrier(2) after announcing itself, was built and
// measured: a blocking round trip went from 6.6 to 16.3 us (the barrier's
// interrupts cost a VM dearly), over the socket's 9 us, so it was not kept.
//
// The locks are 64-bit words holding the holder's pid and the low 32 bits
// of its start time (0 = free), taken by CAS: a waiter that times out on
// the lock's futex checks the holder with /proc and takes over a dead
// holder's lock. Waiting is described in wait.go.
//
// Control block (offsets in the segment's payload). All cross-process
// accesses are atomic unless marked "plain". Each group of fields that one
// side writes sits alone in a 128-byte block (two cache lines: the
// adjacent-line prefetcher fetches lines in pairs), so that a producer's
// Put and a consumer's Get each write only blocks the other side does not
// read on its fast path: per message, the two sides share only the ring.
//
//	 off size field      written by                      read by
//	   0    4 magic      creator, once (plain)           openers
//	   4    4 version    creator, once (plain)           openers
//	   8    8 capacity   creator, once (plain)           openers
//	  16    8 maxMsg     creator, once (plain)           openers
//	  24    4 crc        creator, once: CRC-32C of 0..24 openers
//	  28    4 closed     Close (under producer lock)     Put, Get on empty
//	 128    8 plock      producer lock word              producers, recovery
//	 136    8 tail       producer lock holder            producers, repair
//	 144    8 puts       producer lock holder            Stats, Len
//	 152    8 dropped    whoever recovers a lock         Stats
//	 160    8 claim      producer lock holder: the tail  repair (after the
//	                     it will publish, before it      holder died)
//	                     writes its record
//	 256    4 plockFx    lock futex (bit 0: sleepers)    producers
//	 384    8 clock      consumer lock word              consumers, recovery
//	 392    8 head       consumer lock holder            consumers; producers when full
//	 400    8 gets       consumer lock holder            Stats, Len
//	 408    8 cdead      whoever recovers consumer lock  Stats
//	 512    4 clockFx    lock futex                      consumers
//	 640    4 dataFx     sleeping consumers set bit 0;   producers (load per Put)
//	                     producers bump it to wake them
//	 768    4 spaceFx    sleeping producers set bit 0;   consumers (load per Get)
//	                     consumers bump it to wake them
//	 896    8 freed      consumer lock holder, lazily    producers, when their
//	                                                     cached head runs out
//	1024    8 waits      every sleeper                   Stats
//	1152    C ring       records as above
const (
	offMagic    = 0
	offVersion  = 4
	offCap      = 8
	offMaxMsg   = 16
	offCRC      = 24
	offClosed   = 28
	offPLock    = 128
	offTail     = 136
	offPuts     = 144
	offDropped  = 152
	offClaim    = 160
	offPLockFx  = 256
	offCLock    = 384
	offHead     = 392
	offGets     = 400
	offCDead    = 408
	offCLockFx  = 512
	offDataFx   = 640
	offSpaceFx  = 768
	offFreed    = 896
	offWaits    = 1024
	ctlSize     = 1152
	qMagic      = 0x51435049 // "IPCQ"
	qVersion    = 3          // 3: claim
	hdrSize     = 8
	minCapacity = 64
	maxCapacity = 1 << 40

	flagCommit  = 1 << 31
	flagPadding = 1 << 30
	lenMask     = 1<<30 - 1
	// MaxMessage is the largest maximum message size a queue can have.
	MaxMessage = lenMask
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// This file and Queue.at hold the unsafe casts of the package. Callers
// pass offsets they have bounds-checked and 8-aligned (the payload is
// 64-aligned).

func u64At(b []byte, off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&b[off : off+8][0]))
}

func u32At(b []byte, off int) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&b[off : off+4][0]))
}

// bytesOf returns the memory of *p as bytes (pointer-free T only).
func bytesOf[T any](p *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p))
}

// config is the control block's fixed part.
type config struct {
	capacity uint64
	maxMsg   uint64
}

func writeConfig(ctl []byte, c config) {
	le := binary.LittleEndian
	le.PutUint32(ctl[offMagic:], qMagic)
	le.PutUint32(ctl[offVersion:], qVersion)
	le.PutUint64(ctl[offCap:], c.capacity)
	le.PutUint64(ctl[offMaxMsg:], c.maxMsg)
	le.PutUint32(ctl[offCRC:], crc32.Checksum(ctl[:offCRC], castagnoli))
}

// readConfig validates the control block at the start of payload, a
// segment payload of len(payload) bytes. It never panics.
func readConfig(payload []byte) (config, error) {
	if len(payload) < ctlSize+minCapacity {
		return config{}, fmt.Errorf("%w: %d-byte segment cannot hold a queue", ErrCorrupt, len(payload))
	}
	le := binary.LittleEndian
	c := config{capacity: le.Uint64(payload[offCap:]), maxMsg: le.Uint64(payload[offMaxMsg:])}
	switch {
	case le.Uint32(payload[offMagic:]) != qMagic:
		return c, fmt.Errorf("%w: bad magic %#x", ErrCorrupt, le.Uint32(payload[offMagic:]))
	case le.Uint32(payload[offVersion:]) != qVersion:
		return c, fmt.Errorf("%w: layout version %d, this build reads %d", ErrCorrupt, le.Uint32(payload[offVersion:]), qVersion)
	case le.Uint32(payload[offCRC:]) != crc32.Checksum(payload[:offCRC], castagnoli):
		return c, fmt.Errorf("%w: control block checksum mismatch", ErrCorrupt)
	}
	return c, c.check(len(payload) - ctlSize)
}

// check reports whether c is a possible layout for a ring of room bytes.
func (c config) check(room int) error {
	switch {
	case c.capacity < minCapacity || c.capacity > maxCapacity || bits.OnesCount64(c.capacity) != 1:
		return fmt.Errorf("%w: capacity %d is not a power of two in [%d, %d]", ErrCorrupt, c.capacity, minCapacity, uint64(maxCapacity))
	case c.capacity > uint64(room):
		return fmt.Errorf("%w: capacity %d but only %d bytes for the ring", ErrCorrupt, c.capacity, room)
	case c.maxMsg > maxMsgFor(c.capacity):
		return fmt.Errorf("%w: maximum message %d too large for capacity %d", ErrCorrupt, c.maxMsg, c.capacity)
	}
	return nil
}

// maxMsgFor is the largest maximum message size for a capacity: a record
// of that size, plus the padding before it (smaller than the record) and
// the terminator after it, must fit in the ring.
func maxMsgFor(capacity uint64) uint64 {
	m := (capacity-hdrSize)/2 - 2*hdrSize
	return min(m, MaxMessage)
}

// recLen is the ring bytes a message of n bytes takes: header plus payload
// rounded up to 8.
func recLen(n int) uint64 { return hdrSize + (uint64(n)+7)&^7 }

func tagOf(pos uint64) uint64 { return uint64(uint32(pos>>3)) << 32 }

// header word for a record at pos.
func mkHeader(pos uint64, n int, padding bool) uint64 {
	w := tagOf(pos) | flagCommit | uint64(n)
	if padding {
		w |= flagPadding
	}
	return w
}

// record kinds returned by decodeHeader.
const (
	recEmpty = iota
	recMessage
	recPadding
)

// decodeHeader interprets the header word w read at position pos of a
// ring of capacity c with maximum message maxMsg. It returns the kind and
// the payload length, or ErrCorrupt for a word that cannot be there: wrong
// tag, missing commit bit, a length over maxMsg or running past the end of
// the ring, a padding record that does not end exactly at the ring's end.
func decodeHeader(w, pos, c, maxMsg uint64) (kind int, n int, err error) {
	if w == 0 {
		return recEmpty, 0, nil
	}
	if w&^(1<<32-1) != tagOf(pos) || w&flagCommit == 0 {
		return 0, 0, fmt.Errorf("%w: header %#x at position %d", ErrCorrupt, w, pos)
	}
	l := w & lenMask
	off := pos & (c - 1)
	if w&flagPadding != 0 {
		if off+hdrSize+l != c {
			return 0, 0, fmt.Errorf("%w: padding of %d bytes at offset %d", ErrCorrupt, l, off)
		}
		return recPadding, int(l), nil
	}
	if !msgFits(pos, l, c, maxMsg) {
		return 0, 0, fmt.Errorf("%w: record of %d bytes at offset %d", ErrCorrupt, l, off)
	}
	return recMessage, int(l), nil
}

// msgFits reports whether a message record of l payload bytes at position
// pos is possible: l at most maxMsg, and the record inside the ring of
// capacity c.
func msgFits(pos, l, c, maxMsg uint64) bool {
	return l <= maxMsg && pos&(c-1)+recLen(int(l)) <= c
}

// rawU32 is the plain address of an atomic word, for futex calls.
func rawU32(a *atomic.Uint32) *uint32 { return (*uint32)(unsafe.Pointer(a)) }
