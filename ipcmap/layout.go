package ipcmap

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/ipckit/ipckit/internal/robust"
)

// Layout
//
// A map's segment holds, from offset 0 of its bytes: the control block,
// the slot table, the allocation bitmap and the data area. The layout is
// ABI (TestLayout pins it); every word two processes use at once is read
// and written with sync/atomic.
//
//	control block (ctlSize bytes)
//	off size field      written by                 read by
//	  0    4 magic      creator, once              attach (validate)
//	  4    4 version    creator, once              attach
//	  8   16 lock       writers (internal/robust)  writers
//	 24    4 slotBits   creator, once              attach: the table has 1<<slotBits slots
//	 28    4 _          zero
//	 32    8 entries    creator, once              attach, writers: the most live entries
//	 40    8 chunks     creator, once              attach: the data area's chunks
//	 48    8 live       writers, atomic            Len; repair recounts it
//	 56    8 tombs      writers, atomic            writers; repair recounts it
//	 64    8 used       writers, atomic            Stats; repair recounts it
//	 72    8 hint       writers, atomic            writers: where the next allocation looks first
//	 80    8 deaths     writers (repair), atomic   Stats: writers that died inside a write
//	 88   40 _          zero
//
//	slot table (1<<slotBits slots of 16 bytes), each slot
//	  0    8 seq        writers, atomic: +1 after a word store, before the old record is freed; repair: +1 on all
//	  8    8 word       writers, atomic: 0 empty, 1 deleted, else (chunk+1)<<32 | tag
//
//	bitmap (ceil(chunks/64) words): bit c set when chunk c is allocated;
//	written and read by writers only (under the lock), atomically.
//
//	data area (chunks * chunkSize bytes): records. A record starts at a
//	chunk: a header word (key length in the low 32 bits, value length in
//	the high 32), the key padded to 8 bytes, then the value; it takes
//	whole chunks. Written by the writer that allocated it before its slot
//	word publishes it, never changed afterwards, read by anyone; every
//	access is a 64-bit atomic (so a reader racing a reuse of freed chunks
//	reads stale words, which its seq check then discards, rather than a
//	data race).
const (
	magic   = 0x4d435049 // "IPCM"
	version = 1

	offMagic    = 0
	offVersion  = 4
	offLock     = 8
	offSlotBits = 24
	offEntries  = 32
	offChunks   = 40
	offLive     = 48
	offTombs    = 56
	offUsed     = 64
	offHint     = 72
	offDeaths   = 80
	ctlSize     = 128

	slotSize  = 16
	chunkSize = 16

	wordEmpty   = 0
	wordDeleted = 1

	// maxSlotBits bounds the table (2^30 slots of 16 bytes); maxChunks
	// keeps chunk+1 within the 32 bits a slot word gives it.
	maxSlotBits = 30
	maxChunks   = 1<<32 - 2
)

// geometry is a map's fixed shape, from its constructor's options or
// read back from its control block.
type geometry struct {
	slotBits uint32
	entries  uint64
	chunks   uint64
}

func (g geometry) slots() uint64       { return 1 << g.slotBits }
func (g geometry) bitmapWords() uint64 { return (g.chunks + 63) / 64 }
func (g geometry) offSlots() uint64    { return ctlSize }
func (g geometry) offBitmap() uint64   { return ctlSize + g.slots()*slotSize }
func (g geometry) offData() uint64     { return g.offBitmap() + g.bitmapWords()*8 }
func (g geometry) size() uint64        { return g.offData() + g.chunks*chunkSize }

// geometryFor returns the shape of a map of entries entries and bytes
// bytes of records: at least twice as many slots as entries (a power of
// two), so that probes stay short.
func geometryFor(entries, bytes int) (geometry, error) {
	if entries < 1 || entries > 1<<(maxSlotBits-1) {
		return geometry{}, fmt.Errorf("ipcmap: entries %d out of range 1 to %d: %w", entries, 1<<(maxSlotBits-1), errInvalid)
	}
	if bytes < chunkSize || uint64(bytes)/chunkSize > maxChunks {
		return geometry{}, fmt.Errorf("ipcmap: bytes %d out of range %d to %d: %w", bytes, chunkSize, uint64(maxChunks)*chunkSize, errInvalid)
	}
	return geometry{
		slotBits: uint32(bits.Len64(uint64(2*entries - 1))),
		entries:  uint64(entries),
		chunks:   uint64(bytes) / chunkSize,
	}, nil
}

// writeGeometry writes an empty map's control block into b, which is
// zeroed and g.size() bytes long.
func writeGeometry(b []byte, g geometry) {
	le := binary.LittleEndian
	le.PutUint32(b[offMagic:], magic)
	le.PutUint32(b[offVersion:], version)
	le.PutUint32(b[offSlotBits:], g.slotBits)
	le.PutUint64(b[offEntries:], g.entries)
	le.PutUint64(b[offChunks:], g.chunks)
}

// readGeometry validates the control block at the start of b (the
// segment's bytes) and returns the map's shape: anything impossible,
// sizes that do not add up to len(b) included, is ErrCorrupt.
func readGeometry(b []byte) (geometry, error) {
	if len(b) < ctlSize {
		return geometry{}, fmt.Errorf("ipcmap: %d bytes, too small for a map: %w", len(b), ErrCorrupt)
	}
	le := binary.LittleEndian
	if m := le.Uint32(b[offMagic:]); m != magic {
		return geometry{}, fmt.Errorf("ipcmap: bad magic %#x: %w", m, ErrCorrupt)
	}
	if v := le.Uint32(b[offVersion:]); v != version {
		return geometry{}, fmt.Errorf("ipcmap: layout version %d, want %d: %w", v, version, ErrCorrupt)
	}
	g := geometry{
		slotBits: le.Uint32(b[offSlotBits:]),
		entries:  le.Uint64(b[offEntries:]),
		chunks:   le.Uint64(b[offChunks:]),
	}
	if g.slotBits < 1 || g.slotBits > maxSlotBits || g.entries < 1 || g.entries > g.slots()/2 ||
		g.chunks < 1 || g.chunks > maxChunks {
		return geometry{}, fmt.Errorf("ipcmap: impossible shape (slot bits %d, entries %d, chunks %d): %w",
			g.slotBits, g.entries, g.chunks, ErrCorrupt)
	}
	if g.size() != uint64(len(b)) {
		return geometry{}, fmt.Errorf("ipcmap: shape needs %d bytes, segment has %d: %w", g.size(), len(b), ErrCorrupt)
	}
	return g, nil
}

// words is a map's memory seen through the layout: every access to
// shared memory goes through these views, and every index is checked.
type words struct {
	g      geometry
	ctl    []byte
	slots  []slot
	bitmap []atomic.Uint64
	data   []atomic.Uint64 // the data area, a word at a time

	lock                            *robust.Lock
	live, tombs, used, hint, deaths *atomic.Uint64

	// readFault, a test hook (nil in production), runs inside a reader's
	// look at a slot, between its loads of seq.
	readFault func()
}

// slot is one entry of the table; see "Layout".
type slot struct {
	seq  atomic.Uint64
	word atomic.Uint64
}

// view lays the layout g over b (validated by readGeometry, 8-byte
// aligned, as every segment's bytes are).
func view(b []byte, g geometry) words {
	return words{
		g:      g,
		ctl:    b[:ctlSize:ctlSize],
		slots:  unsafe.Slice((*slot)(unsafe.Pointer(&b[g.offSlots()])), g.slots()),
		bitmap: unsafe.Slice((*atomic.Uint64)(unsafe.Pointer(&b[g.offBitmap()])), g.bitmapWords()),
		data:   unsafe.Slice((*atomic.Uint64)(unsafe.Pointer(&b[g.offData()])), g.chunks*chunkSize/8),
		live:   u64At(b, offLive),
		tombs:  u64At(b, offTombs),
		used:   u64At(b, offUsed),
		hint:   u64At(b, offHint),
		deaths: u64At(b, offDeaths),
	}
}

func u64At(b []byte, off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&b[off : off+8][0]))
}

// liveWord returns the slot word of a record at chunk c with tag.
func liveWord(c uint64, tag uint32) uint64 { return (c+1)<<32 | uint64(tag) }

// chunkOf returns the chunk of a live slot word.
func chunkOf(w uint64) uint64 { return w>>32 - 1 }

// tagOf returns the tag of a live slot word.
func tagOf(w uint64) uint32 { return uint32(w) }

// recordChunks returns how many chunks a record of a klen-byte key and a
// vlen-byte value takes.
func recordChunks(klen, vlen uint64) uint64 {
	return (8 + pad8(klen) + vlen + chunkSize - 1) / chunkSize
}

func pad8(n uint64) uint64 { return (n + 7) &^ 7 }

// record is a record's place, read from its header and checked against
// the data area: key at word key, value at word val (indexes into
// words.data), n chunks from chunk c.
type record struct {
	c, n       uint64
	klen, vlen uint64
	key, val   uint64
}

// recordAt reads the header of the record at chunk c and checks that the
// record lies inside the data area; an impossible one is ErrCorrupt (for
// a reader it may also be a stale read, which the caller's seq check
// tells apart).
func (w *words) recordAt(c uint64) (record, error) {
	if c >= w.g.chunks {
		return record{}, fmt.Errorf("ipcmap: record at chunk %d of %d: %w", c, w.g.chunks, ErrCorrupt)
	}
	h := w.data[c*chunkSize/8].Load()
	klen, vlen := h&0xffffffff, h>>32
	n := recordChunks(klen, vlen)
	if n > w.g.chunks-c {
		return record{}, fmt.Errorf("ipcmap: record at chunk %d (key %d bytes, value %d) overruns the data area of %d chunks: %w",
			c, klen, vlen, w.g.chunks, ErrCorrupt)
	}
	key := c*chunkSize/8 + 1
	return record{c: c, n: n, klen: klen, vlen: vlen, key: key, val: key + pad8(klen)/8}, nil
}

// load appends n bytes from data word i on to dst, growing it at most
// once (n is within the data area: recordAt checked it).
func (w *words) load(dst []byte, i, n uint64) []byte {
	dst = slices.Grow(dst, int(n))
	for ; n >= 8; i, n = i+1, n-8 {
		dst = binary.LittleEndian.AppendUint64(dst, w.data[i].Load())
	}
	if n > 0 {
		var t [8]byte
		binary.LittleEndian.PutUint64(t[:], w.data[i].Load())
		dst = append(dst, t[:n]...)
	}
	return dst
}

// equal reports whether the n = len(b) bytes from data word i are b.
func (w *words) equal(i uint64, b []byte) bool {
	for len(b) >= 8 {
		if w.data[i].Load() != binary.LittleEndian.Uint64(b) {
			return false
		}
		i, b = i+1, b[8:]
	}
	if len(b) > 0 {
		var t [8]byte
		copy(t[:], b)
		mask := uint64(1)<<(8*len(b)) - 1
		return w.data[i].Load()&mask == binary.LittleEndian.Uint64(t[:])
	}
	return true
}

// store writes b from data word i, a word at a time; the last word's
// bytes past b are zero.
func (w *words) store(i uint64, b []byte) {
	for len(b) >= 8 {
		w.data[i].Store(binary.LittleEndian.Uint64(b))
		i, b = i+1, b[8:]
	}
	if len(b) > 0 {
		var t [8]byte
		copy(t[:], b)
		w.data[i].Store(binary.LittleEndian.Uint64(t[:]))
	}
}

// Hashing: a key's 64-bit hash picks its home slot (low bits) and its tag
// (high 32 bits), which every process must compute alike: so it is a
// fixed function of the key's bytes (multiply-xor over 8-byte words, then
// murmur3's finaliser), part of the layout version, never a per-process
// seeded one.
func hash(key []byte) uint64 {
	const m1, m2 = 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9
	h := uint64(len(key)) * m1
	for len(key) >= 8 {
		h = bits.RotateLeft64(h^binary.LittleEndian.Uint64(key)*m2, 29) * m1
		key = key[8:]
	}
	if len(key) > 0 {
		var t [8]byte
		copy(t[:], key)
		h = bits.RotateLeft64(h^binary.LittleEndian.Uint64(t[:])*m2, 29) * m1
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
