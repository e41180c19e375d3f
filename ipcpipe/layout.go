package ipcpipe

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Pipe layout and algorithm
//
// The segment's payload holds a control block of ctlSize bytes, then one
// ring of R bytes (a power of two) per direction: two for a duplex pipe,
// one (direction 1) for a one-way pipe. Direction d carries messages from
// end d to end 1-d, so end e writes direction e and reads direction 1-e.
// Python's one-way Pipe makes its first end the receiver: only direction
// 1 exists then.
//
// Each direction is a single-producer single-consumer ring. Positions are
// free-running uint64 byte counters; position p lives at ring offset
// p & (R-1). A record is an 8-byte header (the payload's length, or
// padMark for padding that runs to the ring's end) and the payload,
// rounded up to 8 bytes. A record never crosses the ring's end: one that
// would is preceded by padding. The writer (the process owning the
// sending end) writes records at tail, then publishes tail; the reader
// reads records from head up to tail, then publishes head. Tail - head is
// at most R.
//
// Ordering. tail and head are stored with sync/atomic's Store (a full
// fence: XCHG on amd64; STLR on arm64, which a later LDAR cannot pass) and
// loaded with its Load. The writer's plain stores of a record (header and
// payload) come before its store of tail, and the reader reads them only
// after its load of tail returned at least the record's end: the Go memory
// model's message passing. The reader's copy-out comes before its store of
// head, and the writer reuses the space only after it loaded that head.
// The full fence after each index store is the one the wake-up protocol
// needs (internal/robust, "Waiting"): the writer loads dataFx after its
// tail store, the reader spaceFx after its head store, and each wakes the
// other only if its sleepers bit is set. A sleeper sets the bit, then
// re-reads the index before it sleeps: no lost wake-up.
//
// Lazy fence. The reader stores head after each message with a release
// store (internal/release: a plain MOV on amd64), so head is always exact
// (a handle travelling to another process, or an Open taking the end
// over, starts from it), then loads spaceFx; it pays a full fence (head
// stored again with sync/atomic) before that load only every R/8 bytes
// taken, whenever the ring runs empty in its view (the message taken
// reaches the tail it last loaded), and when it found a writer asleep (so
// a writer that announced itself is woken at the next message taken). What
// the skipped fence leaves is the store-buffering case: a writer that
// announces itself (a locked RMW) and re-reads head while the reader's
// release store is still in its store buffer, and the reader's load of
// spaceFx passing that store. The writer then sleeps until the reader's
// next fence (at most R/8 bytes later, or when the ring runs empty) or
// until its wait's check period (robust.WaitOptions.Watch's timer)
// re-reads head: only a reader that stops receiving from a full ring at
// that instant makes that wait longer than the next message. The writer
// keeps its fence on every tail store: a reader sleeps on every empty
// ring, so that one would be paid on each.
//
// Death. A writer that dies before its tail store leaves nothing a reader
// sees; after it, a whole record. A reader that dies before its head store
// leaves the record in the ring. Either way the other end learns of the
// death from the owner word of the dead end (the liveness token of the
// process holding it): a sleeper follows that token (robust.WaitOptions
// Holders), so the kernel wakes it at the death, and its Watch checks the
// token; a receiver then drains what the dead writer published and
// returns io.EOF (with ErrPeerDied), a sender returns io.ErrClosedPipe.
//
// Every index read from shared memory is checked before use: tail - head
// at most R, both 8-aligned, a header's length at most the maximum
// message and inside the published bytes. Anything else is ErrCorrupt.
//
// Control block (offsets in the payload). Fixed part, written by the
// creator before anyone can reach the segment (shm's Kind.CreateInit, or
// an anonymous or heap segment not yet handed on), plain; read by attach
// after shm's validation, plain:
const (
	offMagic   = 0  // uint32: pMagic
	offVersion = 4  // uint32: pVersion
	offRing    = 8  // uint64: R
	offMaxMsg  = 16 // uint32: maximum message
	offFlags   = 20 // uint32: flagDuplex
	offCRC     = 24 // uint32: CRC-32C of bytes 0 to 24

	// End blocks, 128 bytes each (end e at offEnd + e*128):
	offEnd = 128
	// endOwner (uint64): the liveness token of the process holding the
	// end, with transitBit set while a handle to it travels to another
	// process. Stored (atomic) by the creator, by GobEncode (the bit) and
	// by the process that attaches a handed-on end; loaded (atomic) by the
	// end's own calls (ErrMoved) and by the other end's waits (the peer to
	// follow).
	endOwner = 0
	// endPid (uint32): that process's pid, for error messages. Stored
	// (atomic) before endOwner; loaded (atomic) by the other end.
	endPid = 8
	// endClosed (uint32): 1 once the end was closed by its process. Stored
	// (atomic) by Close after the end's last send; loaded (atomic) by the
	// other end, before its last look at tail.
	endClosed = 12

	// Direction blocks, 512 bytes each (direction d at offDir + d*512),
	// each word in a 128-byte block of its own (two cache lines, which the
	// adjacent-line prefetcher fetches in pairs):
	offDir = 384
	// dirTail (uint64): the position after the last published record.
	// Stored (atomic) by the writer; loaded (atomic) by the reader.
	dirTail = 0
	// dirHead (uint64): the position of the oldest record not taken.
	// Stored (atomic) by the reader; loaded (atomic) by the writer.
	dirHead = 128
	// dirData (uint32): the reader's sleepers word (robust.Wait); the
	// writer loads it after its tail store and wakes. Close of either end
	// bumps it (robust.WakeAll).
	dirData = 256
	// dirSpace (uint32): the writer's sleepers word, as dirData.
	dirSpace = 384

	ctlSize = offDir + 2*512

	pMagic     = 0x50435049 // "IPCP"
	pVersion   = 1
	flagDuplex = 1
	hdrSize    = 8
	padMark    = 1<<32 - 1
	transitBit = 1 << 63

	minRing = 64
	maxRing = 1 << 40
	// MaxMessage is the largest maximum message a pipe can have.
	MaxMessage = 1<<31 - 1
	// DefaultSize is the ring size, per direction, of a pipe made with
	// Options.Size 0.
	DefaultSize = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// config is the control block's fixed part.
type config struct {
	ring   uint64
	maxMsg uint32
	duplex bool
}

// rings is the number of rings the pipe has.
func (c config) rings() int {
	if c.duplex {
		return 2
	}
	return 1
}

// size is the payload size the pipe takes.
func (c config) size() int { return ctlSize + c.rings()*int(c.ring) }

// ringOff is where direction d's ring starts in the payload.
func (c config) ringOff(d int) int {
	if !c.duplex {
		d = 0
	}
	return ctlSize + d*int(c.ring)
}

// has reports whether direction d exists.
func (c config) has(d int) bool { return c.duplex || d == 1 }

// maxMsgFor is the largest maximum message for a ring of r bytes: a
// record of that size and the padding before it (shorter than the record)
// fit in the ring.
func maxMsgFor(r uint64) uint64 { return min(r/2-hdrSize, MaxMessage) }

// recLen is the ring bytes a message of n bytes takes.
func recLen(n uint64) uint64 { return hdrSize + (n+7)&^7 }

func writeConfig(b []byte, c config) {
	le := binary.LittleEndian
	le.PutUint32(b[offMagic:], pMagic)
	le.PutUint32(b[offVersion:], pVersion)
	le.PutUint64(b[offRing:], c.ring)
	le.PutUint32(b[offMaxMsg:], c.maxMsg)
	var f uint32
	if c.duplex {
		f = flagDuplex
	}
	le.PutUint32(b[offFlags:], f)
	le.PutUint32(b[offCRC:], crc32.Checksum(b[:offCRC], castagnoli))
}

// readConfig validates the fixed part of the pipe in payload. It never
// panics.
func readConfig(payload []byte) (config, error) {
	if len(payload) < ctlSize {
		return config{}, fmt.Errorf("ipcpipe: %d-byte segment cannot hold a pipe: %w", len(payload), ErrCorrupt)
	}
	le := binary.LittleEndian
	f := le.Uint32(payload[offFlags:])
	c := config{ring: le.Uint64(payload[offRing:]), maxMsg: le.Uint32(payload[offMaxMsg:]), duplex: f&flagDuplex != 0}
	switch {
	case le.Uint32(payload[offMagic:]) != pMagic:
		return c, fmt.Errorf("ipcpipe: bad magic %#x: %w", le.Uint32(payload[offMagic:]), ErrCorrupt)
	case le.Uint32(payload[offVersion:]) != pVersion:
		return c, fmt.Errorf("ipcpipe: layout version %d, this build reads %d: %w", le.Uint32(payload[offVersion:]), pVersion, ErrCorrupt)
	case le.Uint32(payload[offCRC:]) != crc32.Checksum(payload[:offCRC], castagnoli):
		return c, fmt.Errorf("ipcpipe: control block checksum mismatch: %w", ErrCorrupt)
	case f&^flagDuplex != 0:
		return c, fmt.Errorf("ipcpipe: flags %#x: %w", f, ErrCorrupt)
	case c.ring < minRing || c.ring > maxRing || bits.OnesCount64(c.ring) != 1:
		return c, fmt.Errorf("ipcpipe: ring size %d is not a power of two in [%d, %d]: %w", c.ring, minRing, uint64(maxRing), ErrCorrupt)
	case uint64(c.maxMsg) > maxMsgFor(c.ring) || c.maxMsg == 0:
		return c, fmt.Errorf("ipcpipe: maximum message %d for a %d-byte ring: %w", c.maxMsg, c.ring, ErrCorrupt)
	case c.size() > len(payload):
		return c, fmt.Errorf("ipcpipe: %d rings of %d bytes do not fit a %d-byte segment: %w", c.rings(), c.ring, len(payload), ErrCorrupt)
	}
	return c, nil
}

// This file holds the unsafe casts of the package. Callers pass offsets
// they have bounds-checked and aligned (the payload is 64-aligned).

func u64At(b []byte, off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&b[off : off+8][0]))
}

func u32At(b []byte, off int) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&b[off : off+4][0]))
}

// word returns the plain 8-byte word at off of ring (8-aligned, in bounds).
func word(ring []byte, off uint64) *uint64 {
	return (*uint64)(unsafe.Pointer(&ring[off : off+8][0]))
}
