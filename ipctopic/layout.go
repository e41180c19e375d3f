package ipctopic

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Topic layout and algorithm
//
// The segment's payload holds a control block (ctlSize bytes), then the
// subscriber table (one 128-byte entry per subscriber slot), then the ring
// of N message slots (N a power of two), each of stride bytes: an 8-byte
// stamp, an 8-byte length, and maxMsg bytes of payload rounded up to 8. Message number s (free-running from 0; tail is the next
// to publish) lives in slot s & (N-1).
//
// Stamps. A slot's stamp is 0 (never written), s+1 once message s is
// committed there, or (s+1)|stampWriting while a publisher writes message
// s over whatever the slot held. A subscriber reads message c only under a
// stamp of exactly c+1, loaded (atomically) before it reads the length and
// the payload: so it never sees a message half written, whoever dies
// where. A stamp for a later message means message c was overwritten
// (overwrite policy) and an older one that c is not published yet.
//
// Publishing. A publisher takes the publisher lock (internal/robust's
// robust lock), reads tail s, checks room (block policy, below), stores
// the slot's stamp (s+1)|stampWriting, the length and the payload, then the
// stamp s+1 (the commit, a release store paired with the subscribers'
// atomic load), then tail = s+1 (release store), and unlocks with
// Lock.Unlock, whose CAS is the full fence after which it loads dataFx to
// wake sleeping subscribers (the sleepers-bit protocol of robust's
// "Waiting"). Two locked instructions per message, the lock's and the
// unlock's.
//
// A publisher's death. The next process to take the publisher lock (any
// publisher, Subscribe or Shutdown) finds the holder dead and repairs
// (repair): if the slot at tail holds a committed s+1 the dead publisher's
// message is whole and tail moves over it; if it holds (s+1)|stampWriting
// the message is dropped and counted (Stats.Dropped), the stamp becomes
// s|stampWriting (no subscriber takes it for a message, and a repairer
// killed after this is not counted twice by the next: only a death between
// the count and that store is), and the next publisher writes message s
// there again. Subscribers never took a writing stamp for
// a message, so nothing torn was ever seen.
//
// A subscriber that goes to sleep waiting for a message while another
// process holds the publisher lock follows that holder (as the queue's
// consumer follows its producer lock's): the kernel wakes it the moment
// the holder dies, and its Watch (recoverPublisher) takes the lock over
// and repairs, which delivers a message committed before the death and
// wakes every subscriber. What that leaves, as for the queue: a publisher
// that takes the lock after a subscriber fell asleep, commits, and is
// killed before its wake-up (a few instructions) leaves that subscriber
// asleep until the next Publish or Shutdown, from any process. A slow
// timer on every wait would bound that, at a cost the queue measured and
// refused (ipcqueue's "Waiting").
//
// Subscribers. Entry i of the table has an owner word (0: free, else the
// liveness token of the process whose Subscriber uses it) and a cursor (the
// next message that subscriber reads). Subscribe takes the publisher lock,
// finds a free entry, stores cursor = tail and then the owner (CAS from 0):
// every message published after that, and only those, is the
// subscriber's. Under the lock, no message is published between reading
// tail and claiming the entry, so a block-policy publisher never overwrites
// a message the joiner is owed. Leave (Subscriber.Close) CASes the owner back
// to 0 and wakes publishers. A subscriber's death leaves the entry owned by
// a dead token: whoever waits on it (a publisher waiting for room, a
// Subscribe finding the table full) checks the owner's liveness
// (internal/liveness; the kernel tells a sleeping publisher of the death at
// once, robust's "Watching holders") and CASes a dead owner to 0 (reclaim,
// Stats.Reclaimed).
//
// Block policy. Publishing message s overwrites message s-N, so it waits
// until every owned cursor is past s-N: s - min(cursors) < N. A publisher
// handle keeps a lower bound of that minimum (cachedMin) and rescans the
// table only when the bound says the ring is full; cursors only grow, and a
// joiner's cursor is tail at its join, never below a bound taken before, so
// the bound stays true. A subscriber stores its cursor once per batch of
// messages (showBatch: at most a sixteenth of the ring, at most 64; the
// store is a full fence, one locked instruction the batch shares), when it
// sees a publisher asleep (bit 0 of spaceFx, a plain load), and always
// before it waits for a message: a stored cursor lags the subscriber by
// less than a batch, so a publisher may find the ring full that much
// early, but never waits for a subscriber that has read everything (it
// would wait for a cursor the waiting subscriber never moves). Inspect
// shows the stored cursors. A publisher that finds the ring full unlocks,
// stores the cursor it needs (gate = s-N+1, raised monotonically) and sleeps on
// spaceFx; a subscriber that stores a cursor (atomic Store: the full fence)
// loads spaceFx and the gate and wakes sleepers only when its own cursor
// crosses the gate (or when it leaves): once per hand-off, not once per
// message. The publisher's wait follows the owners of the cursors that hold
// it back (Holders), so a subscriber's death is noticed at once, and checks
// them on robust's slow timer besides.
//
// Overwrite policy. Publishers never look at cursors. A subscriber reads
// the length and the payload after the stamp c+1 and loads the stamp again
// afterwards (a seqlock): if it changed, the slot was overwritten under it
// and the copy is discarded. Finding a later stamp m+1 in its slot (m >= c+N),
// a subscriber jumps to the oldest message that can still be whole,
// max(tail-N, m-N+1), and reports the jump, exactly, as a *LaggedError.
//
// Ordering. Every access to a word another process uses at the same time is
// atomic (sync/atomic, or internal/release's release store). The plain
// accesses are payload bytes, written before the commit store and read after
// the subscriber's load of the stamp; under the overwrite policy a
// publisher may write them while a subscriber reads them, which the second
// stamp load detects. The race detector cannot see that argument, so race
// builds copy payloads with 8-byte atomic loads and stores (copy_race.go).
// The control block's fixed part is written before the segment is ready
// and named (shm's Kind.CreateInit).

// Control block offsets (in the segment's payload). For each shared field:
// who writes it, who reads it, and how.
const (
	// Fixed part: written once by the creator (writeConfig, plain stores)
	// inside shm's Kind.CreateInit; read by every attach (readConfig, plain
	// loads, after shm's atomic load of the segment's state).
	offMagic   = 0  // uint32: tMagic
	offVersion = 4  // uint32: tVersion
	offSlots   = 8  // uint64: N, the number of message slots
	offMaxMsg  = 16 // uint64: the largest message
	offSubs    = 24 // uint32: the number of subscriber slots
	offPolicy  = 28 // uint32: Block or Overwrite
	offCRC     = 32 // uint32: CRC-32C of bytes 0 to 32

	// offShutdown (uint32) is 1 once the topic is shut down. Stored by
	// Shutdown under the publisher lock; loaded by publishers under it and
	// by subscribers that find nothing to read. Atomic.
	offShutdown = 36

	// Publisher block, written under the publisher lock.
	//
	// offPLock: the publisher lock (robust.Size bytes: lock word, sleepers
	// word), taken by publishers, Subscribe and Shutdown. Atomic.
	offPLock = 128
	// offTail (uint64): the next message number. Release store by the lock
	// holder after the commit; loaded by publishers, Subscribe, lagging
	// subscribers and Stats. Atomic.
	offTail = 144
	// offDropped (uint64): messages lost with a publisher that died while
	// writing them. Added to by the repairer; read by Stats. Atomic.
	offDropped = 152

	// offGate (uint64): the cursor a block-policy publisher waiting for
	// room needs the slowest subscriber to reach. Raised (CAS) by waiting
	// publishers; loaded by subscribers after each cursor store. Atomic.
	offGate = 256

	// offDataFx (uint32): the sleepers word of subscribers waiting for a
	// message (bit 0 set by a sleeper, bumped by the publisher that sees
	// it; Shutdown adds 2). Atomic.
	offDataFx = 384
	// offSpaceFx (uint32): the same for publishers waiting for room. Atomic.
	offSpaceFx = 512

	// Counters. offReclaimed (uint64): subscriber slots reclaimed from dead
	// processes; offWaits (uint64): futex sleeps. Added to by whoever
	// reclaims or sleeps; read by Stats. Atomic.
	offReclaimed = 640
	offWaits     = 648

	ctlSize = 768 // the subscriber table starts here

	// Subscriber entries: owner (uint64) at 0, CAS by Subscribe (0 to the
	// subscriber's token), by Close (back to 0) and by a reclaimer (a dead
	// token to 0), loaded by publishers, Subscribe and Stats; cursor
	// (uint64) at 8, stored by its subscriber (atomic Store under block,
	// once per batch, see "Block policy"; release store under overwrite) and by Subscribe before it claims the
	// entry, loaded by publishers. Atomic.
	subStride = 128
	subOwner  = 0
	subCursor = 8

	// Slots: stamp (uint64) at 0, length (uint64) at 8, payload at 16.
	// The stamp and length are stored (release stores) by the publisher
	// lock holder and loaded atomically by subscribers; the payload is
	// plain (see "Ordering").
	slotStamp   = 0
	slotLen     = 8
	slotPayload = 16

	stampWriting = 1 << 63

	tMagic   = 0x54435049 // "IPCT"
	tVersion = 1

	minSlots = 2
	maxSlots = 1 << 24
	// MaxMessage is the largest maximum message size a topic can have.
	MaxMessage = 1 << 26
	// MaxSubscribers is the largest number of subscriber slots.
	MaxSubscribers = 1 << 16
	// maxRing bounds the ring's bytes.
	maxRing = 1 << 38
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// config is the control block's fixed part.
type config struct {
	slots  uint64 // N, a power of two
	maxMsg uint64
	subs   uint32
	policy Policy
}

// stride is the bytes of one message slot.
func (c config) stride() uint64 { return slotPayload + (c.maxMsg+7)&^7 }

// ringOff is where the ring starts in the payload.
func (c config) ringOff() uint64 { return ctlSize + uint64(c.subs)*subStride }

// size is the payload bytes the topic needs.
func (c config) size() uint64 { return c.ringOff() + c.slots*c.stride() }

func writeConfig(ctl []byte, c config) {
	le := binary.LittleEndian
	le.PutUint32(ctl[offMagic:], tMagic)
	le.PutUint32(ctl[offVersion:], tVersion)
	le.PutUint64(ctl[offSlots:], c.slots)
	le.PutUint64(ctl[offMaxMsg:], c.maxMsg)
	le.PutUint32(ctl[offSubs:], c.subs)
	le.PutUint32(ctl[offPolicy:], uint32(c.policy))
	writeConfigCRC(ctl)
}

// writeConfigCRC stores the checksum of the fixed part.
func writeConfigCRC(ctl []byte) {
	binary.LittleEndian.PutUint32(ctl[offCRC:], crc32.Checksum(ctl[:offCRC], castagnoli))
}

// readConfig validates the control block at the start of payload, a
// segment payload of len(payload) bytes. It never panics.
func readConfig(payload []byte) (config, error) {
	if len(payload) < ctlSize {
		return config{}, fmt.Errorf("ipctopic: %d-byte segment cannot hold a topic: %w", len(payload), ErrCorrupt)
	}
	le := binary.LittleEndian
	c := config{
		slots: le.Uint64(payload[offSlots:]), maxMsg: le.Uint64(payload[offMaxMsg:]),
		subs: le.Uint32(payload[offSubs:]), policy: Policy(le.Uint32(payload[offPolicy:])),
	}
	switch {
	case le.Uint32(payload[offMagic:]) != tMagic:
		return c, fmt.Errorf("ipctopic: bad magic %#x: %w", le.Uint32(payload[offMagic:]), ErrCorrupt)
	case le.Uint32(payload[offVersion:]) != tVersion:
		return c, fmt.Errorf("ipctopic: layout version %d, this build reads %d: %w", le.Uint32(payload[offVersion:]), tVersion, ErrCorrupt)
	case le.Uint32(payload[offCRC:]) != crc32.Checksum(payload[:offCRC], castagnoli):
		return c, fmt.Errorf("ipctopic: control block checksum mismatch: %w", ErrCorrupt)
	}
	if err := c.check(); err != nil {
		return c, fmt.Errorf("ipctopic: %w: %w", err, ErrCorrupt)
	}
	if need := c.size(); need > uint64(len(payload)) {
		return c, fmt.Errorf("ipctopic: topic needs %d bytes, segment holds %d: %w", need, len(payload), ErrCorrupt)
	}
	return c, nil
}

// check reports why c is not a possible topic (nil if it is). It bounds
// every field before size multiplies them, so size cannot overflow.
func (c config) check() error {
	switch {
	case c.slots < minSlots || c.slots > maxSlots || bits.OnesCount64(c.slots) != 1:
		return fmt.Errorf("%d message slots, want a power of two in [%d, %d]", c.slots, minSlots, maxSlots)
	case c.maxMsg < 1 || c.maxMsg > MaxMessage:
		return fmt.Errorf("maximum message %d, want 1 to %d", c.maxMsg, MaxMessage)
	case c.subs < 1 || c.subs > MaxSubscribers:
		return fmt.Errorf("%d subscriber slots, want 1 to %d", c.subs, MaxSubscribers)
	case c.policy != Block && c.policy != Overwrite:
		return fmt.Errorf("policy %d, want %d (Block) or %d (Overwrite)", uint32(c.policy), Block, Overwrite)
	case c.slots*c.stride() > maxRing:
		return fmt.Errorf("%d slots of %d bytes, more than %d bytes", c.slots, c.stride(), uint64(maxRing))
	}
	return nil
}

// This file holds the unsafe casts of the package. Callers pass offsets
// that readConfig's bounds cover, 8-aligned (the payload is 64-aligned).

func u64At(b []byte, off uint64) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&b[off : off+8][0]))
}

func u32At(b []byte, off uint64) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&b[off : off+4][0]))
}
