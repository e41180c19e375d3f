package shm

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/proc"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/internal/shmfile"
)

// Inspection
//
// An inspector (cmd/ipcs) looks at segments it did not make, of any kind,
// named or anonymous, and must never change one, take one of its locks, or
// be stopped by one that is corrupt, truncated or not a segment at all.
// [Inspect] and [InspectFD] therefore open the file read-only and without
// blocking (and a name without following a link), fstat it before
// anything else, map it PROT_READ (a stray store faults instead of
// writing), validate the header as [Open] does, and hand the payload to
// the inspector its kind registered ([RegisterInspector]) under [Guard],
// so that a segment truncated meanwhile is an error, not a crash.
//
// Each package that builds objects on segments registers the inspector of
// its kinds in an init function, next to the layout it reads, so that no
// layout exists twice; an inspector makes only atomic loads of shared
// words (the same loads the package's own readers make, pairing with the
// same stores) and never claims a liveness token. A kind nobody
// registered is reported by its header alone.

// Holder is a process that an object names by its liveness token as
// holding part of it: a lock, permits, a place at a barrier. It is a plain
// value.
type Holder struct {
	Token Token
	State string // "alive", "dead" or "unknown" (see internal/liveness)
	// Pid is the holder's pid, if a caller found it (an inspector does
	// not: the token is what every PID namespace sees alike); cmd/ipcs
	// finds a live holder's in /proc/PID/fdinfo.
	Pid int `json:",omitempty"`
}

// Token is a liveness token (internal/liveness) as an inspector shows it:
// in hex, in text and in JSON alike (its 62 bits are more than a JSON
// number keeps).
type Token uint64

// String returns the token in hex: "0x3fa507b5".
func (t Token) String() string { return fmt.Sprintf("%#x", uint64(t)) }

// MarshalText returns the token in hex, as String does.
func (t Token) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// HolderOf returns the Holder that token names, with its liveness now.
func HolderOf(token uint64) Holder {
	st := liveness.Check(liveness.Token(token))
	return Holder{Token: Token(token), State: strings.ToLower(st.String())}
}

// String returns the holder's pid if known, its token in hex and its
// state: "pid 1234 token 0x1f (alive)".
func (h Holder) String() string {
	if h.Pid != 0 {
		return fmt.Sprintf("pid %d token %v (%s)", h.Pid, h.Token, h.State)
	}
	return fmt.Sprintf("token %v (%s)", h.Token, h.State)
}

// LockState is what an inspector reads of a robust lock (the lock of
// semaphore.Mutex, of a queue's sides, of a semaphore's guard). The zero
// LockState is a free lock with nobody asleep on it. It is a plain value.
type LockState struct {
	Holder         *Holder `json:",omitempty"` // nil if the lock is free
	Inconsistent   bool    // taken over from a dead holder and not yet marked consistent
	NotRecoverable bool    // unlocked while inconsistent: every Lock fails
	Sleepers       bool    // a locker announced that it sleeps on the lock
}

// String says whether the lock is free or who holds it, and its marks:
// "held by token 0x1f (dead), inconsistent, sleepers".
func (l LockState) String() string {
	var parts []string
	switch {
	case l.NotRecoverable:
		parts = append(parts, "not recoverable")
	case l.Holder == nil:
		parts = append(parts, "free")
	default:
		parts = append(parts, "held by "+l.Holder.String())
	}
	if l.Inconsistent {
		parts = append(parts, "inconsistent")
	}
	if l.Sleepers {
		parts = append(parts, "sleepers")
	}
	return strings.Join(parts, ", ")
}

// PeekLock reads the robust lock whose words are word and sleepers (see
// internal/robust) with atomic loads only, and checks its holder's
// liveness. An impossible lock word is an error wrapping [ErrCorrupt].
func PeekLock(word *atomic.Uint64, sleepers *atomic.Uint32) (LockState, error) {
	return lockState(robust.Peek(word, sleepers))
}

// PeekLockAt is [PeekLock] of the robust lock laid out at the start of b,
// as internal/robust's At places one (8-byte aligned, 16 bytes); a place
// that cannot hold one is an error wrapping [ErrCorrupt].
func PeekLockAt(b []byte) (LockState, error) {
	if len(b) < robust.Size || !aligned(b, 0, 8) {
		return LockState{}, fmt.Errorf("%w: %d bytes at a misaligned or short place cannot hold a lock", ErrSize, len(b))
	}
	return lockState(robust.PeekAt(b))
}

func lockState(ls robust.LockState, err error) (LockState, error) {
	if err != nil {
		return LockState{}, err
	}
	st := LockState{Inconsistent: ls.Inconsistent, NotRecoverable: ls.NotRecoverable, Sleepers: ls.Sleepers}
	if ls.Holder != 0 {
		h := HolderOf(uint64(ls.Holder))
		st.Holder = &h
	}
	return st, nil
}

// Report is what an [Inspector] read of one object: a struct of its state
// (encoding/json gives its fields), and the two things an inspector's
// user acts on.
type Report interface {
	// Holders returns the processes the object records as holding a
	// part of it, with their liveness (nil if none).
	Holders() []Holder
	// Counters returns the object's counters that only grow, by name
	// (nil if none): a watcher shows their rates.
	Counters() map[string]uint64
}

// Inspector reads the object in a segment's payload, which may be a
// read-only mapping, with atomic loads only, and returns what it found,
// or an error (wrapping [ErrCorrupt] for memory that cannot hold the
// object). It must not panic whatever the payload holds, and must not
// keep it after returning.
type Inspector func(payload []byte) (Report, error)

var inspectors sync.Map // Kind -> Inspector

// RegisterInspector makes f the inspector of segments of kind k. Packages
// call it from an init function, once per kind; a second registration of
// a kind panics.
func RegisterInspector(k Kind, f Inspector) {
	if _, dup := inspectors.LoadOrStore(k, f); dup {
		panic(fmt.Sprintf("shm: inspector of kind %v registered twice", k))
	}
}

// Info is what [Inspect] or [InspectFD] learned of a segment. The file's
// fields are set whenever the file could be opened; the header's once it
// validated; Report once the kind's inspector ran.
type Info struct {
	Name     string      // the segment's name; "" for an anonymous one
	Path     string      // the file opened: /dev/shm/ipckit.NAME or /proc/PID/fd/FD
	Dev, Ino uint64      // the file's identity, as /proc/PID/maps shows it
	Size     int64       // the file's size in bytes, header included
	Mode     os.FileMode // the file's type and permission bits
	UID      uint32      // the file's owner
	Created  time.Time   // when the file was made (its last status change where tmpfs keeps no birth time)

	Kind         Kind   // what the header says the segment holds
	CreatorPid   uint32 // the creating process, as the header records it
	CreatorStart uint64 // its start time in clock ticks since boot (/proc/PID/stat)
	CreatorAlive bool   // whether that pid still runs with that start time

	Report Report // the kind's state; nil if no inspector is registered for it
}

// Names returns the names of the entries of /dev/shm that are in ipckit's
// part of it (their file names start with "ipckit."), whatever they are:
// segments, corrupt or foreign files, links, FIFOs. A name need not be
// valid ([Inspect] says so).
func Names() ([]string, error) {
	ents, err := os.ReadDir(shmfile.Dir)
	if err != nil {
		return nil, fmt.Errorf("shm: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutPrefix(e.Name(), namePrefix); ok {
			names = append(names, n)
		}
	}
	return names, nil
}

// memfdName is the name every anonymous segment's memfd is given.
const memfdName = "ipckit"

// IsAnonymousLink reports whether target, the link of an entry of
// /proc/PID/fd, names the memfd of an anonymous segment.
func IsAnonymousLink(target string) bool { return target == "/memfd:"+memfdName+" (deleted)" }

// Inspect reads the named segment name without changing it (see
// "Inspection"). It never follows a link: a link, a FIFO or any other
// non-regular file is an error wrapping [ErrSymlink] or [ErrNotRegular];
// an invalid header one of the errors [Open] gives. On error, Info holds
// what could be read before it.
func Inspect(name string) (Info, error) {
	info := Info{Name: name, Path: shmfile.Path(namePrefix + name)}
	if err := checkName(name); err != nil {
		return info, err
	}
	return inspectPath(info, false)
}

// InspectFD reads the anonymous segment that process pid holds open as its
// descriptor fd, as [Inspect] reads a named one. It fails with an error
// wrapping os.ErrPermission for a process this one may not look into.
func InspectFD(pid, fd int) (Info, error) {
	info := Info{Path: "/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd)}
	return inspectPath(info, true)
}

func inspectPath(info Info, follow bool) (Info, error) {
	f, st, err := shmfile.OpenReadOnly(info.Path, follow)
	info.Dev, info.Ino, info.Size, info.Mode, info.UID, info.Created = st.Dev, st.Ino, st.Size, st.Mode, st.UID, st.Created
	if err != nil {
		return info, fmt.Errorf("shm: %w", err)
	}
	defer f.Close()
	op := "inspect " + info.Path
	switch {
	case st.Size < headerSize:
		return info, &opError{op, fmt.Errorf("%w: %d bytes cannot hold a %d-byte header", ErrSize, st.Size, headerSize)}
	case st.Size > MaxSize+headerSize:
		return info, &opError{op, fmt.Errorf("%w: %d bytes is over the limit", ErrSize, st.Size)}
	}
	mem, err := shmfile.MapReadOnly(f, int(st.Size))
	if err != nil {
		return info, &opError{op, err}
	}
	defer shmfile.Unmap(mem)
	var h header
	if gerr := Guard(func() { h, err = validate(mem, KindAny) }); gerr != nil {
		err = gerr
	}
	if err != nil {
		return info, &opError{op, err}
	}
	info.Kind, info.CreatorPid, info.CreatorStart = h.Kind, h.Pid, h.Started
	info.CreatorAlive = proc.Alive(proc.ID{Pid: h.Pid, Start: h.Started})
	f2, ok := inspectors.Load(h.Kind)
	if !ok {
		return info, nil
	}
	var rep Report
	if gerr := Guard(func() { rep, err = f2.(Inspector)(mem[headerSize:]) }); gerr != nil {
		err = gerr
	}
	if err != nil {
		return info, &opError{fmt.Sprintf("inspect the %v in %s", h.Kind, info.Path), err}
	}
	info.Report = rep
	return info, nil
}

// MarshalText returns the kind's name, as String does.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// The inspectors of this package's kinds.
func init() {
	RegisterInspector(KindBytes, func(p []byte) (Report, error) { return BytesState{Size: len(p)}, nil })
	for k, f := range valueInspectors {
		RegisterInspector(k, f)
	}
	for k, f := range arrayInspectors {
		RegisterInspector(k, func(p []byte) (Report, error) { return f(p, -1) })
	}
	RegisterInspector(KindCatalog, inspectCatalog)
}

// valueInspectors reads each kind of value.
var valueInspectors = map[Kind]Inspector{
	KindInt8: inspectValue[int8], KindUint8: inspectValue[uint8],
	KindInt16: inspectValue[int16], KindUint16: inspectValue[uint16],
	KindInt32: inspectValue[int32], KindUint32: inspectValue[uint32],
	KindInt64: inspectValue[int64], KindUint64: inspectValue[uint64],
	KindFloat32: inspectValue[float32], KindFloat64: inspectValue[float64],
	KindBool: inspectBool,
}

// arrayInspectors reads each kind of array: n elements, or (n < 0) as
// many as fill the payload.
var arrayInspectors = map[Kind]func(p []byte, n int) (ValuesState, error){
	KindInt8Array: inspectArray[int8], KindUint8Array: inspectArray[uint8],
	KindInt16Array: inspectArray[int16], KindUint16Array: inspectArray[uint16],
	KindInt32Array: inspectArray[int32], KindUint32Array: inspectArray[uint32],
	KindInt64Array: inspectArray[int64], KindUint64Array: inspectArray[uint64],
	KindFloat32Array: inspectArray[float32], KindFloat64Array: inspectArray[float64],
}

// InspectArray reads n elements of an array of kind k (an [ArrayKind])
// at the start of payload, as the inspector of k's segments does, for
// packages that place an array beside their own words. A kind that is no
// array's is an error wrapping [ErrKind]; a payload too short for n
// elements, or misaligned, one wrapping [ErrSize].
func InspectArray(k Kind, payload []byte, n int) (ValuesState, error) {
	f, ok := arrayInspectors[k]
	if !ok {
		return ValuesState{}, fmt.Errorf("%w: %v is no array's kind", ErrKind, k)
	}
	if n < 0 {
		return ValuesState{}, fmt.Errorf("%w: an array of %d elements", ErrSize, n)
	}
	return f(payload, n)
}

// BytesState is the report on a segment of raw bytes (the package-level
// [Create]): only its size, since its bytes mean what its users say.
type BytesState struct {
	Size int // payload bytes
}

// Holders returns nil: raw bytes record no holder.
func (BytesState) Holders() []Holder { return nil }

// Counters returns nil.
func (BytesState) Counters() map[string]uint64 { return nil }

// ValuesState is the report on a shared value or array: its elements, or
// the first [MaxReportedElems] of them.
type ValuesState struct {
	Len    int   // elements in the array (1 for a value)
	Values []any // the first elements, loaded atomically one by one
}

// MaxReportedElems is the most elements a [ValuesState] lists.
const MaxReportedElems = 16

// Holders returns nil: values record no holder.
func (ValuesState) Holders() []Holder { return nil }

// Counters returns nil: a value may go down as well as up.
func (ValuesState) Counters() map[string]uint64 { return nil }

// inspectValue reads a value of type T at the start of the payload,
// through an Array's own atomic Load.
func inspectValue[T Elem](p []byte) (Report, error) { return inspectArray[T](p, 1) }

// inspectBool reads a Bool: a byte, nonzero for true.
func inspectBool(p []byte) (Report, error) {
	st, err := inspectArray[uint8](p, 1)
	if err != nil {
		return nil, err
	}
	st.Values[0] = st.Values[0] != uint8(0)
	return st, nil
}

// inspectArray reads n elements of T (n < 0: as many as fill the payload)
// at the start of p, through an Array's own atomic Load.
func inspectArray[T Elem](p []byte, n int) (ValuesState, error) {
	_, size := elemKind[T]()
	if n < 0 {
		n = len(p) / size
	}
	if n > len(p)/size || !aligned(p, 0, size) {
		return ValuesState{}, fmt.Errorf("%w: %d bytes cannot hold %d elements of %d bytes", ErrSize, len(p), n, size)
	}
	a := &Array[T]{elems: sliceAt[T](p, 0, n)}
	st := ValuesState{Len: n}
	for i := range min(n, MaxReportedElems) {
		st.Values = append(st.Values, a.Load(i))
	}
	return st, nil
}

// CatalogState is the report on a [Catalog]: its entries in table order.
type CatalogState struct {
	Entries []CatalogEntry
	Slots   int    // entries the table has room for
	Used    uint64 // bytes of values allocated
	Room    int    // bytes for values in all
}

// CatalogEntry is one used entry of a catalog's table.
type CatalogEntry struct {
	Name    string
	State   string // "claiming", "named", "ready", "abandoned" or "corrupt"
	Kind    Kind
	Size    uint64
	Offset  uint64  // in the payload; ready entries only
	Claimer *Holder `json:",omitempty"` // for an entry not yet ready: who is making it
}

var entryStates = map[uint32]string{
	entryClaiming: "claiming", entryNamed: "named", entryReady: "ready",
	entryAbandoned: "abandoned", entryCorrupt: "corrupt",
}

// Holders returns the claimers of entries not yet ready.
func (c CatalogState) Holders() []Holder {
	var hs []Holder
	for _, e := range c.Entries {
		if e.Claimer != nil {
			hs = append(hs, *e.Claimer)
		}
	}
	return hs
}

// Counters returns the bytes allocated, which only grow.
func (c CatalogState) Counters() map[string]uint64 { return map[string]uint64{"used_bytes": c.Used} }

// inspectCatalog reads a catalog's table as [CatalogAt] and the entry
// views do, with their atomic loads, in the same order.
func inspectCatalog(p []byte) (Report, error) {
	n, data, err := catalogLayout(p)
	if err != nil {
		return nil, err
	}
	st := CatalogState{Slots: n, Room: len(p) - data}
	if b := ptrAt[atomic.Uint64](p, catOffBump).Load(); b >= uint64(data) {
		st.Used = b - uint64(data)
	}
	for i := range n {
		e := entryIn(p, i)
		s := e.load()
		if s == entryFree {
			continue
		}
		ce := CatalogEntry{State: entryStates[s]}
		if s != entryClaiming {
			kl := ptrAt[atomic.Uint32](e.b, entryOffKindLen).Load()
			ce.Name, ce.Kind = e.name(), Kind(kl&0xffff)
			ce.Size = ptrAt[atomic.Uint64](e.b, entryOffSize).Load()
		}
		if s == entryReady {
			ce.Offset = ptrAt[atomic.Uint64](e.b, entryOffOff).Load()
		}
		if s == entryClaiming || s == entryNamed {
			h := HolderOf(e.owner.Load())
			ce.Claimer = &h
		}
		st.Entries = append(st.Entries, ce)
	}
	return st, nil
}
