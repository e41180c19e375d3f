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
// R bytes (a power of two). Positions are free-running uint64 byte
// counters (they wrap at 2^64; all arithmetic is modulo 2^64); a position p
// lives at ring offset p & (R-1).
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
// Capacity. A record that would cross the end of the ring is preceded by a
// padding record running to the end (shorter than the record). After the
// last record, the ring keeps one 8-byte word for the terminator (below),
// which must never overwrite the header at head. So records and padding
// between head and tail take at most R-8 bytes: that is Queue.Capacity,
// the figure the package doc states, exactly (TestCapacityExact). Filling
// those 8 bytes too would mean leaving no terminator when the ring is
// exactly full: the word a consumer next reads at that position would then
// be the header of the record it took a lap before. Today that reads as
// corruption; read as "empty" instead, it would still be taken for a new
// record in rings of 32 GiB and more, where uint32(p>>3) repeats every
// lap. So the word stays kept, and the layout unchanged.
//
// Producers (two-lock design). Put takes the producer lock (below), reads
// tail, checks space against head, and writes its record at tail: first it
// zeroes the header word just after the record (the terminator, a release
// store), then the payload, then stores the header word (the commit, a
// release store paired with the consumer's atomic load of that word), then
// stores tail and unlocks. A consumer therefore learns of a record from the record itself,
// never from tail: on the fast path the two sides share no index at all.
// The real record after a padding is committed before the padding, so a
// consumer that skips the padding finds a committed record.
//
// Why a producer's death is harmless. Everything a producer writes before
// its commit lies beyond tail in free space, and the word at tail is 0
// (the previous record's terminator), so consumers see nothing. The next
// process to take the lock finds the holder dead (by its liveness token,
// see lock.go), advances tail over any record the dead producer did
// commit, and counts a message dropped if it committed none. Garbage the
// dead producer left in free space is never read: a consumer reads only
// header words that a terminator zeroed or a commit wrote.
//
// Consumers take the consumer lock, load the header at head, copy the
// payload, store head (the single point at which the message is taken:
// pairs with the producer's load of head before reusing the space) and
// unlock. A consumer that finds the ring empty waits holding the lock (the
// others could not take anything either), so the word it polls is always
// the next header, never payload a producer is writing a lap later. A
// consumer killed before that store leaves the record for the next one;
// after it, the message is gone with it. Head publication costs one store
// to a line only consumers use. Producers see the free space through a
// second, lazy copy of head, freed, which a consumer publishes only every
// R/8 bytes, when the queue runs empty, or when a producer sleeps for
// space: so a producer waiting on a full ring polls a word that changes a
// few times per lap rather than on every message (the cache-line ping-pong
// that otherwise halves throughput). Before it sleeps or gives up
// (TryPut), a producer reads head itself, so laziness never makes Put wait
// or TryPut fail while there is room.
//
// Ordering. Every access to a word that another process uses at the same
// time is atomic: sync/atomic, or internal/release's Store64 (a release
// store: a plain MOV on amd64, like Agrona's putLongOrdered; sync/atomic's
// Store, STLR, on arm64 and under the race detector). No plain load
// relies on x86's store order. The plain accesses are bytes that an
// atomic store publishes and that are read only after an atomic load
// observes it (the Go memory model's message passing): payloads, copied
// in by write before the commit and out by take after its load of the
// header; and the control block's fixed part, which Create writes before
// the segment is ready and named (shm's Kind.CreateInit), so an Open
// racing Create finds it whole or finds no name. On a weak memory model
// (arm64), these would break if they were plain:
//
//   - write's commit (the header store) and the padding's, committed after
//     the record behind it: a store could become visible before the
//     payload, or the padding before the record, and a consumer would take
//     a torn message or read a lap-old header (ErrCorrupt, or in rings of
//     32 GiB and more a stale record delivered again).
//   - write's terminator (release.Store64 of the header word after the
//     record): consumers load that word atomically; the commit orders it,
//     and space checks keep them off it until then.
//   - write's stores of tail and UnlockRelease: the lock word could read
//     free before tail moved, and the next producer would write over a
//     published record.
//   - ready's and getLocked's loads of the header at head, including the
//     polls of the empty-ring wait: the payload loads could be satisfied
//     before the header load (a torn message), or the compiler could hoist
//     the poll out of the loop (a hang).
//   - take's release of head, the take itself (and of freed, in take and
//     publish): the arm64-only case. The copy-out's loads could still be
//     pending when head becomes visible; a producer would reuse the space
//     and the consumer return a mix of two messages. x86 never lets a
//     later store pass a load, so only a weak model shows this. getLocked's
//     head store over a padding is the same.
//   - take's UnlockRelease: the next consumer could read a stale head and
//     take the record again (a duplicate).
//   - refreshHead's and put's loads of freed and head: they pair with those
//     releases; without the acquire, the producer's writes into the freed
//     space could land before the consumer's copy-out.
//   - getLocked's EOF decision, shut then the header again: a stale header
//     with shut=1 would be io.EOF with messages left (lost messages).
//
// The release stores spare a Put or Get a stall draining its store buffer
// at each of them. After them, each Put and Get makes one atomic add (its
// puts or gets counter), a full fence, before it loads the futex words to
// decide whether to wake anyone (wakeAfter): that fence is what the
// Dekker-style wake-up protocol of wait.go needs, on amd64 too, where a
// release store and a later load may be reordered (the store buffer); on
// arm64 STLR then LDAR is ordered anyway, and the code keeps one path. So
// a Put makes two locked instructions, the lock's CAS and this add, and so
// does a Get. (Side effect: a process killed between its unlock and its
// add leaves Puts or Gets one short, so Len one off; nothing else.) What
// each costs, and why moving the fence to the sleepers (membarrier(2) in
// each sleeper) was not kept: BENCHMARKS.md, "Not met, and why" and
// "ipcqueue: figures moved from code comments". publish stores freed and
// then wakes with no add between: a sleeping producer re-checks head,
// which take stored before its fence. repairProducer acts on what a dead
// producer wrote, plain stores included: the kernel's teardown of that
// process (which drops its liveness lock, checked before the takeover)
// comes in between.
//
// Emulation cannot check any of this: qemu-user on x86 emits arm64's STLR
// as a fence then a store and LDAR as a load then a fence, so a Store then
// a Load of another word is not ordered there (internal/release's
// TestStoreBuffering shows Go's sequentially consistent atomics broken),
// while the orderings arm64 weakens stay x86's. The emulated arm64 stage
// (.ci/arm64) therefore skips the tests whose verdict rests on ordering;
// arm64 ordering rests on this argument and the Go memory model.
//
// The locks are internal/robust's robust locks, whose 64-bit word holds
// the holder's liveness token (0 = free), taken by CAS: a waiter checks
// the holder and takes over a dead holder's lock (lock.go). Waiting is
// described in wait.go; how Close keeps the mapping until no call uses it,
// in guard.go.
//
// Control block. Each group of fields that one side writes sits alone in a
// 128-byte block (two cache lines: the adjacent-line prefetcher fetches
// lines in pairs), so that a producer's Put and a consumer's Get each
// write only blocks the other side does not read on its fast path: per
// message, the two sides share only the ring. The offsets below are in the
// segment's payload; each says who writes the field, who reads it, and
// how. "Atomic" means sync/atomic or a release store (internal/release)
// on one side and an atomic load on the other.
const (
	// Fixed part: written once by the creator (writeConfig, plain stores)
	// inside shm's Kind.CreateInit, before the segment's state store and
	// its name publish it; read by every attach (readConfig, plain loads,
	// after shm's atomic load of that state), which validates it.
	offMagic   = 0  // uint32: qMagic
	offVersion = 4  // uint32: qVersion
	offCap     = 8  // uint64: the ring's size R in bytes
	offMaxMsg  = 16 // uint64: the maximum message size
	offCRC     = 24 // uint32: CRC-32C of bytes 0 to 24

	// offShutdown (uint32) is 1 once the queue is shut down. Written by
	// Shutdown under the producer lock; read by Put under the producer lock
	// and by Get when the ring is empty, and by IsShutdown. Atomic.
	offShutdown = 28

	// Producer block: written under the producer lock.
	//
	// offPLock (uint64) is the producer lock's word (robust.Lock): the
	// holder's liveness token, or 0. Taken by CAS by every producer;
	// stored 0 by the holder (release store, or a CAS on the slow paths);
	// taken over by CAS from a dead holder. Atomic.
	offPLock = 128
	// offTail (uint64) is the position after the last published record.
	// Written by the producer lock holder (release store) and by a repairer
	// of a dead holder; read by producers under the lock. Atomic.
	offTail = 136
	// offPuts (uint64) counts committed messages. Added to (atomic add, the
	// Put's full fence) by the producer lock holder after unlocking and by
	// a repairer; read by Stats and Len.
	offPuts = 144
	// offDropped (uint64) counts messages lost with a producer that died
	// inside Put. Added to by whoever repairs the producer lock; read by
	// Stats. Atomic.
	offDropped = 152
	// offClaim (uint64) is the end of the record the producer lock holder
	// is writing, stored (release store) before it writes anything else;
	// read only by a repairer, after the holder died. Atomic.
	offClaim = 160
	// offClaimN (uint64) is how many messages the record or batch ending
	// at claim holds: stored (release store) before claim, read only by a
	// repairer, after the holder died, to count them in puts or dropped.
	// A repairer that drops them first stores claimDropping with the value
	// dropped is to reach, so that a repairer killed while counting is
	// followed by one that stores the same value, not adds again.
	offClaimN = 168
	// offReserved (uint64) is 1 while the producer lock holder holds a
	// Claim (Reserve) rather than writing a Put, 0 otherwise. Stored
	// (release store) by the holder under the lock and cleared by a
	// repairer; loaded by TryPut, which waits for a Put's holder but not
	// for a claim's (see "Try calls" in batch.go). Atomic.
	offReserved = 176
	// offPLockFx (uint32) is the producer lock's sleepers word
	// (robust.Lock): bit 0 set (CAS) by a producer about to sleep on the
	// lock, bumped (CAS) by the unlocker that sees it. Atomic.
	offPLockFx = 256

	// Consumer block: written under the consumer lock.
	//
	// offCLock (uint64) is the consumer lock word, as offPLock.
	offCLock = 384
	// offHead (uint64) is the position of the oldest record not taken.
	// Written by the consumer lock holder (release store: the message is
	// taken); read by consumers under the lock, and by producers when the
	// ring looks full (Put before sleeping, TryPut). Atomic.
	offHead = 392
	// offGets (uint64) counts taken messages. Added to (atomic add, the
	// Get's full fence) by the consumer lock holder after unlocking; read by
	// Stats and Len.
	offGets = 400
	// offCDead (uint64) counts consumer locks taken over from a dead
	// consumer. Added to by the consumer that took it over; read by Stats.
	// Atomic.
	offCDead = 408
	// offReading (uint64) is 1 while the consumer lock holder is inside
	// Read's fn (user code, of any length), 0 otherwise. Stored (release
	// store) by the holder under the lock, cleared by whoever takes the
	// lock over from a dead holder; loaded by TryGet, which waits for a
	// Get's holder but not for a Read's. Atomic.
	offReading = 416
	// offCLockFx (uint32) is the consumer lock's sleepers word, as
	// offPLockFx.
	offCLockFx = 512

	// Wake-up words and shared counters.
	//
	// offDataFx (uint32): bit 0 set (CAS) by a consumer about to sleep on an
	// empty ring; loaded by every Put after its fence, and bumped (CAS,
	// clearing the bit) by the producer that sees the bit. Shutdown adds 2.
	// Atomic.
	offDataFx = 640
	// offSpaceFx (uint32): the same for producers sleeping on a full ring,
	// loaded by every Get after its fence and bumped by the consumer that
	// sees the bit. Atomic.
	offSpaceFx = 768
	// offFreed (uint64) is a lagging copy of head: written (release store)
	// by the consumer lock holder every R/8 bytes, when the ring runs empty
	// and when a producer sleeps for space; read by producers when their
	// cached head runs out. Atomic.
	offFreed = 896
	// offWaits (uint64) counts futex sleeps. Added to by every sleeper;
	// read by Stats. Atomic.
	offWaits = 1024

	ctlSize = 1152 // the ring starts here

	qMagic   = 0x51435049 // "IPCQ"
	qVersion = 5          // 3: claim; 4: lock words hold liveness tokens; 5: batches (claimN)
	hdrSize  = 8
	minRing  = 64
	maxRing  = 1 << 40

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
	ring   uint64 // the ring's size R
	maxMsg uint64
}

func writeConfig(ctl []byte, c config) {
	le := binary.LittleEndian
	le.PutUint32(ctl[offMagic:], qMagic)
	le.PutUint32(ctl[offVersion:], qVersion)
	le.PutUint64(ctl[offCap:], c.ring)
	le.PutUint64(ctl[offMaxMsg:], c.maxMsg)
	le.PutUint32(ctl[offCRC:], crc32.Checksum(ctl[:offCRC], castagnoli))
}

// readConfig validates the control block at the start of payload, a
// segment payload of len(payload) bytes. It never panics.
func readConfig(payload []byte) (config, error) {
	if len(payload) < ctlSize+minRing {
		return config{}, fmt.Errorf("%d-byte segment cannot hold a queue: %w", len(payload), ErrCorrupt)
	}
	le := binary.LittleEndian
	c := config{ring: le.Uint64(payload[offCap:]), maxMsg: le.Uint64(payload[offMaxMsg:])}
	switch {
	case le.Uint32(payload[offMagic:]) != qMagic:
		return c, fmt.Errorf("bad magic %#x: %w", le.Uint32(payload[offMagic:]), ErrCorrupt)
	case le.Uint32(payload[offVersion:]) != qVersion:
		return c, fmt.Errorf("layout version %d, this build reads %d: %w", le.Uint32(payload[offVersion:]), qVersion, ErrCorrupt)
	case le.Uint32(payload[offCRC:]) != crc32.Checksum(payload[:offCRC], castagnoli):
		return c, fmt.Errorf("control block checksum mismatch: %w", ErrCorrupt)
	}
	return c, c.check(len(payload) - ctlSize)
}

// check reports whether c is a possible layout for a ring of room bytes.
func (c config) check(room int) error {
	switch {
	case c.ring < minRing || c.ring > maxRing || bits.OnesCount64(c.ring) != 1:
		return fmt.Errorf("ring size %d is not a power of two in [%d, %d]: %w", c.ring, minRing, uint64(maxRing), ErrCorrupt)
	case c.ring > uint64(room):
		return fmt.Errorf("ring size %d but only %d bytes for the ring: %w", c.ring, room, ErrCorrupt)
	case c.maxMsg > maxMsgFor(c.ring):
		return fmt.Errorf("maximum message %d too large for a %d-byte ring: %w", c.maxMsg, c.ring, ErrCorrupt)
	}
	return nil
}

// maxMsgFor is the largest maximum message size for a ring of r bytes: a
// record of that size, plus the padding before it (smaller than the
// record) and the terminator after it, must fit in the ring.
func maxMsgFor(r uint64) uint64 {
	m := (r-hdrSize)/2 - 2*hdrSize
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
// ring of c bytes with maximum message maxMsg. It returns the kind and
// the payload length, or ErrCorrupt for a word that cannot be there: wrong
// tag, missing commit bit, a length over maxMsg or running past the end of
// the ring, a padding record that does not end exactly at the ring's end.
func decodeHeader(w, pos, c, maxMsg uint64) (kind int, n int, err error) {
	if w == 0 {
		return recEmpty, 0, nil
	}
	if w&^(1<<32-1) != tagOf(pos) || w&flagCommit == 0 {
		return 0, 0, fmt.Errorf("ipcqueue: header %#x at position %d: %w", w, pos, ErrCorrupt)
	}
	l := w & lenMask
	off := pos & (c - 1)
	if w&flagPadding != 0 {
		if off+hdrSize+l != c {
			return 0, 0, fmt.Errorf("ipcqueue: padding of %d bytes at offset %d: %w", l, off, ErrCorrupt)
		}
		return recPadding, int(l), nil
	}
	if !msgFits(pos, l, c, maxMsg) {
		return 0, 0, fmt.Errorf("ipcqueue: record of %d bytes at offset %d: %w", l, off, ErrCorrupt)
	}
	return recMessage, int(l), nil
}

// msgFits reports whether a message record of l payload bytes at position
// pos is possible: l at most maxMsg, and the record inside the ring of c
// bytes.
func msgFits(pos, l, c, maxMsg uint64) bool {
	return l <= maxMsg && pos&(c-1)+recLen(int(l)) <= c
}
