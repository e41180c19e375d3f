package shm

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Segment header
//
// Every segment ipckit creates starts with this 64-byte header, in the
// spirit of bbolt's meta page. The creator fills the fixed fields, then the
// checksum over them, then (named segments) the object that
// [Kind.CreateInit]'s fill builds, then stores state = stateReady last
// (atomically, markReady), and only then gives the segment its name; an
// opener loads the state first (atomically), then validates magic,
// version, kind, checksum, sizes and the state, in that order, and returns
// the matching sentinel error. The header is ABI: fixed-width
// fields, native (little-endian on every supported platform) byte order,
// explicit padding; header_test.go pins every offset.
//
//	off size field     written by     read by
//	  0    4 magic     creator, once  opener (validate)
//	  4    2 version   creator, once  opener
//	  6    2 kind      creator, once  opener
//	  8    8 size      creator, once  opener: must equal the file size
//	 16    8 payload   creator, once  opener: offset of the caller's bytes
//	 24    4 pid       creator, once  diagnostics: creator's pid
//	 28    4 _         creator, zero  nobody (reserved)
//	 32    8 started   creator, once  diagnostics: creator's start time
//	 40    8 _         creator, zero  nobody (reserved)
//	 48    4 checksum  creator, once  opener: CRC-32C of bytes 0..48
//	 52    4 state     creator, last, atomic store (markReady);
//	                   opener, atomic load, first (validate)
//	 56    8 _         creator, zero  nobody (reserved)
//
// The fixed fields are plain stores and loads: the creator writes them
// before it publishes the segment (state, then its name, or its descriptor
// to a child), and an opener reads them after loading state. The reserved
// bytes are zero in layout version 1 and covered by the checksum where it
// reaches (28 and 40); a later version may give them a use, and says so
// with its version number.
//
// Ordering (the whole package). Every access to a word that two processes
// use at the same time is atomic (sync/atomic); no plain load relies on
// x86's store order. The plain accesses are bytes written before an atomic
// store and read after an atomic load that observes it (the Go memory
// model's message passing): the header's fixed fields and what a fill
// writes (published by markReady's state store, read after validate's
// state load; the system calls that name the segment or pass its
// descriptor order them too), and a catalog entry's name (published by
// its state store). On a weak memory model (arm64) these would break if
// they were plain:
//
//   - markReady's store of the state, and validate's load of it, which
//     comes before its reads of the fixed fields: the fields, or the
//     object a fill built, could be read stale under a ready state. The
//     state is never re-read plainly (decodeHeader skips it), so a later
//     layout may change it while the segment is shared.
//   - Kind.CreateInit itself: an object built after the segment is named
//     (a queue's control block, a semaphore's magic, fillCatalog's words)
//     is open to an Open that races the creator, which then reads it
//     half built (ErrCorrupt) on any platform and unordered on arm64.
//   - the methods of Int32, Int64, Uint64, Float64 and Array: each is one
//     sync/atomic call (Float64's arithmetic a CAS loop), the atomicity
//     and order they document.
//   - the catalog's entry states (Catalog.claim stores named, then ready;
//     entry.load reads them): the name, kind and size are stored before
//     named and the offset before ready, so a reader loading the state
//     first could otherwise match a half-written name or use an offset not
//     yet written. fillCatalog stores the magic last and CatalogAt loads
//     it first, for the same reason.
//
// Emulation cannot check this: qemu-user on x86 emits arm64's STLR as a
// fence then a store and LDAR as a load then a fence, which leaves Go's
// sequentially consistent Store then Load of another word unordered
// (internal/release's TestStoreBuffering), so .ci/arm64 skips the tests
// whose verdict rests on ordering.
type header struct {
	Magic    uint32
	Version  uint16
	Kind     Kind
	Size     uint64
	Payload  uint64
	Pid      uint32
	_        uint32 // reserved, zero
	Started  uint64
	_        uint64 // reserved, zero
	Checksum uint32
	State    uint32
	_        uint64 // reserved, zero
}

const (
	headerSize = 64
	magic      = 0x4b435049 // "IPCK" in little-endian bytes
	version    = 1

	stateInit  = 0
	stateReady = 1
)

// Offsets of the header's fields; the table above says who writes and
// reads each, and header_test.go pins them to the header struct.
const (
	offMagic     = 0
	offVersion   = 4
	offKind      = 6
	offSize      = 8
	offPayload   = 16
	offPid       = 24
	offReserved0 = 28 // 4 bytes
	offStarted   = 32
	offReserved1 = 40 // 8 bytes
	offChecksum  = 48
	offState     = 52
	offReserved2 = 56 // 8 bytes
)

// Kind says what a segment holds. Each kind's Create, CreateAnonymous and
// NewHeap record it in the header, and its Open checks it. The zero Kind is
// [KindAny]. A Kind is a plain value: copy it and use it from any goroutine.
type Kind uint16

// The kinds of segment ipckit creates.
const (
	KindAny          Kind = 0 // for Open only: accept any kind
	KindBytes        Kind = 1 // raw bytes: the package-level Create
	KindInt32        Kind = 2
	KindInt64        Kind = 3
	KindUint64       Kind = 4
	KindFloat64      Kind = 5
	KindInt32Array   Kind = 6
	KindInt64Array   Kind = 7
	KindUint64Array  Kind = 8
	KindFloat64Array Kind = 9
	KindCatalog      Kind = 10 // named values found by name: Catalog
	KindQueue        Kind = 16 // ipcqueue
	KindMutex        Kind = 17 // semaphore.Mutex
	KindSemaphore    Kind = 18 // semaphore.Semaphore
	KindEvent        Kind = 19 // semaphore.Event
	KindBarrier      Kind = 20 // semaphore.Barrier
	KindPipe         Kind = 24 // ipcpipe: two connected ends
	KindTasks        Kind = 25 // ipcqueue.JoinableQueue's task counts
	KindCondition    Kind = 40 // semaphore.Condition
	KindLocked       Kind = 41 // semaphore.Locked: an array with its Mutex
	kindMax               = KindUint32Array
)

// The kinds of the values and arrays of Python's other typecodes.
const (
	KindInt8         Kind = 48
	KindUint8        Kind = 49
	KindInt16        Kind = 50
	KindUint16       Kind = 51
	KindUint32       Kind = 52
	KindFloat32      Kind = 53
	KindBool         Kind = 54
	KindInt8Array    Kind = 56
	KindUint8Array   Kind = 57
	KindInt16Array   Kind = 58
	KindUint16Array  Kind = 59
	KindFloat32Array Kind = 60
	KindBoolArray    Kind = 61
	KindUint32Array  Kind = 62
)

var kindNames = map[Kind]string{
	KindAny: "any", KindBytes: "bytes", KindInt32: "int32", KindInt64: "int64",
	KindUint64: "uint64", KindFloat64: "float64", KindInt32Array: "int32 array",
	KindInt64Array: "int64 array", KindUint64Array: "uint64 array",
	KindFloat64Array: "float64 array", KindCatalog: "catalog", KindQueue: "queue", KindMutex: "mutex",
	KindSemaphore: "semaphore", KindEvent: "event", KindBarrier: "barrier",
	KindPipe: "pipe", KindTasks: "tasks",
	KindCondition: "condition", KindLocked: "locked array",
	KindInt8: "int8", KindUint8: "uint8", KindInt16: "int16", KindUint16: "uint16",
	KindUint32: "uint32", KindFloat32: "float32", KindBool: "bool",
	KindInt8Array: "int8 array", KindUint8Array: "uint8 array", KindInt16Array: "int16 array",
	KindUint16Array: "uint16 array", KindUint32Array: "uint32 array",
	KindFloat32Array: "float32 array", KindBoolArray: "bool array",
}

// String returns the kind's name.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", uint16(k))
}

func (k Kind) valid() bool {
	_, ok := kindNames[k]
	return ok && k != KindAny && k <= kindMax
}

// encodeHeader writes h's fixed fields and their checksum into b, leaving
// the state word alone.
func encodeHeader(b []byte, h *header) {
	le := binary.LittleEndian
	le.PutUint32(b[offMagic:], h.Magic)
	le.PutUint16(b[offVersion:], h.Version)
	le.PutUint16(b[offKind:], uint16(h.Kind))
	le.PutUint64(b[offSize:], h.Size)
	le.PutUint64(b[offPayload:], h.Payload)
	le.PutUint32(b[offPid:], h.Pid)
	le.PutUint32(b[offReserved0:], 0)
	le.PutUint64(b[offStarted:], h.Started)
	le.PutUint64(b[offReserved1:], 0)
	le.PutUint32(b[offChecksum:], checksum(b))
	le.PutUint64(b[offReserved2:], 0)
}

// decodeHeader reads the fixed fields of a header from b, which holds at
// least headerSize bytes. It leaves State zero: the state word is shared
// with the atomic store that publishes the segment, so only validate reads
// it, atomically.
func decodeHeader(b []byte) header {
	le := binary.LittleEndian
	return header{
		Magic:    le.Uint32(b[offMagic:]),
		Version:  le.Uint16(b[offVersion:]),
		Kind:     Kind(le.Uint16(b[offKind:])),
		Size:     le.Uint64(b[offSize:]),
		Payload:  le.Uint64(b[offPayload:]),
		Pid:      le.Uint32(b[offPid:]),
		Started:  le.Uint64(b[offStarted:]),
		Checksum: le.Uint32(b[offChecksum:]),
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b[:offChecksum], castagnoli) }

// validate checks the header at the start of b, a segment of len(b) bytes,
// and returns it, or the first error of: [ErrSize] (too short to hold a
// header), [ErrBadMagic], [ErrVersion], [ErrKind] (unknown, or not want
// unless want is KindAny), [ErrChecksum], [ErrSize] (sizes impossible),
// [ErrNotReady]. It never panics, whatever b holds.
func validate(b []byte, want Kind) (header, error) {
	if len(b) < headerSize {
		return header{}, fmt.Errorf("%w: %d bytes cannot hold a %d-byte header", ErrSize, len(b), headerSize)
	}
	if !aligned(b, offState, 4) {
		// Not a segment (those are page- or 64-aligned), and an atomic
		// load of the state word would fault on arm64.
		return header{}, fmt.Errorf("%w: header at a misaligned address", ErrSize)
	}
	// The state first, atomically: this load pairs with markReady's store,
	// so the plain loads of the fixed fields come after it.
	state := stateWord(b).Load()
	h := decodeHeader(b)
	h.State = state
	switch {
	case h.Magic != magic:
		return h, fmt.Errorf("%w %#x: not an ipckit segment", ErrBadMagic, h.Magic)
	case h.Version != version:
		return h, fmt.Errorf("%w %d (this build reads %d)", ErrVersion, h.Version, version)
	case !h.Kind.valid():
		return h, fmt.Errorf("%w: unknown kind %d", ErrKind, uint16(h.Kind))
	case want != KindAny && h.Kind != want:
		return h, fmt.Errorf("%w: segment holds %v, want %v", ErrKind, h.Kind, want)
	case h.Checksum != checksum(b):
		return h, ErrChecksum
	case h.Size > MaxSize+headerSize:
		return h, fmt.Errorf("%w: header says %d bytes, over the limit", ErrSize, h.Size)
	case h.Size != uint64(len(b)):
		return h, fmt.Errorf("%w: header says %d bytes, segment has %d", ErrSize, h.Size, len(b))
	case h.Payload != headerSize:
		return h, fmt.Errorf("%w: payload offset %d", ErrSize, h.Payload)
	case h.State != stateReady:
		return h, ErrNotReady
	}
	return h, nil
}
