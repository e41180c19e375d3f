package shm

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/liveness"
)

// Catalog
//
// A Catalog is a segment of values that any process finds by name, like
// Boost's managed_shared_memory::find_or_construct: the first process to ask
// for "hits" makes it (zeroed), and every later request, from any process,
// gets the same memory. It is lock-free, so a process killed at any point
// leaves nothing locked.
//
// The payload starts with a small header and a fixed table of entries; the
// values follow, allocated by an atomic bump pointer and never freed. The
// constants below name every offset, with who writes and reads it and how.
//
//	off size field    written by              read by
//	  0    4 magic    creator, once           attach
//	  4    4 entries  creator, once           attach (then a local)
//	  8    8 bump     allocators (CAS)        allocators: next free offset
//	 16   48 _
//	 64  128*entries  the table, entry i at 64+128*i:
//	   0    4 state   claimer (stores), waiters of a dead claimer (CAS to
//	                  abandoned); all read. Atomic
//	   8    8 owner   claimer (CAS from 0: the claim itself); all read
//	  16    8 off     claimer, before state=ready
//	  24    8 size    claimer, before state=named
//	  32    2 kind    claimer, before state=named
//	  34    2 namelen claimer, before state=named
//	  40   88 name    claimer, before state=named
//
// An entry goes free -> claiming -> named -> ready, or to abandoned from
// claiming or named. Claiming is not a value of the state word: an entry
// is claiming while its state is free and its owner is not 0. To find or
// make a name, a process scans the table in order: a ready or named entry
// of that name is the answer (it waits for named to become ready); the
// first free entry it claims with a CAS of the owner word from 0 to its
// liveness token (internal/liveness), writes the name, and then looks
// below it for the same name again, because two processes may claim
// entries for one name at once: the lower entry wins, the higher is
// abandoned and its claimer takes the lower's answer. Entries below a
// claimed one were all taken before it (entries are never freed), so the
// lowest entry of a name is the same for everyone. The claimer's token is
// in the entry from the claiming CAS on, so no instant exists at which an
// entry is claimed by nobody known. A claimer that died before finishing
// is seen by its waiters (its token is liveness.Dead: valid in every PID
// namespace) and its entry abandoned; they then search again. A claimer
// whose liveness cannot be proven (Unknown) is waited for, as a live one
// is: its entry is never abandoned. An owner word that is no token at all
// is corrupt memory: ErrCorrupt.
//
// catMagic names the layout: "CATL" kept the claimer's pid in the state
// word and its start time where the owner token now is.

const (
	catMagic   = 0x32544143 // "CAT2"; "CATL" (0x4c544143) was the pid layout
	catHeader  = 64
	entrySize  = 128
	maxNameLen = 88
	catEntries = 64
	catPoll    = 50 * time.Microsecond // first wait for a live claimer
	catPollMax = 10 * time.Millisecond // longest, backing off
)

// Offsets in the catalog's header, from the start of the payload.
const (
	// catOffMagic is a uint32, catMagic: the creator stores it last in
	// fillCatalog, atomically, after the two words below; CatalogAt loads
	// it first, atomically (pairing with that store), to attach.
	catOffMagic = 0
	// catOffEntries is a uint32, the table's entry count: the creator
	// stores it once, atomically, before the magic; CatalogAt loads it
	// once, atomically, bounds-checks it and keeps a local copy.
	catOffEntries = 4
	// catOffBump is a uint64, the offset (in the payload) of the first free
	// byte for values: the creator stores it before the magic; allocators
	// (alloc) load it and advance it by compare-and-swap; all atomic.
	catOffBump = 8
)

// Offsets in a table entry, from the entry's start. The state word orders
// the rest: a claimer writes a field before the state store that the
// comment names, and a reader reads it only after loading that state (or a
// later one), so the fields need no ordering of their own.
const (
	// entryOffState is a uint32, the state (entryFree, entryNamed,
	// entryReady or entryAbandoned; never entryClaiming, which is free
	// with an owner). The claimer stores each state after its claim;
	// settle and answer may CAS a dead claimer's entry to abandoned;
	// everyone loads it. All atomic.
	entryOffState = 0
	// entryOffOwner is a uint64, the claimer's liveness token: the claim
	// is a compare-and-swap of it from 0, which comes before every other
	// write to the entry; waiters on a claiming or named entry load it,
	// for the liveness check. All atomic.
	entryOffOwner = 8
	// entryOffOff is a uint64, the value's offset in the payload: the
	// claimer stores it before state=ready; answer loads it after loading
	// ready and bounds-checks it. Both atomic.
	entryOffOff = 16
	// entryOffSize is a uint64, the value's size in bytes: the claimer
	// stores it before state=named; answer loads it after ready. Both
	// atomic.
	entryOffSize = 24
	// entryOffKindLen is a uint32, the value's Kind in bits 0-15 and the
	// name's length in bits 16-31: the claimer stores it before
	// state=named; name and answer load it after named. Both atomic.
	entryOffKindLen = 32
	// entryOffName holds the name's bytes, up to maxNameLen: the claimer
	// copies them in before state=named (plain stores; the state store
	// publishes them); name reads them after loading named or ready (plain
	// loads).
	entryOffName = 40
)

const (
	entryFree uint32 = iota
	entryClaiming
	entryNamed
	entryReady
	entryAbandoned
	// entryCorrupt is what load says of a state no code stores (find
	// skips such an entry, as it skips abandoned ones).
	entryCorrupt uint32 = 7
)

// errRetry asks find to search again: the entry it waited on was abandoned.
var errRetry = errors.New("shm: retry")

// Catalog is a segment of named shared values that every process finds by
// name; see [Catalog.Int64] and [CatalogArray].
//
// The zero Catalog is not usable: get one from [NewCatalog],
// [CreateCatalog], [OpenCatalog] or [CatalogAt], or decode a handle into a
// new one with [Catalog.GobDecode]. A *Catalog is safe for concurrent use by
// goroutines and by any number of processes, and may be passed to a child
// process (see the package doc). It must not be copied (go vet catches
// copies): pass the pointer. It returns no slices; the values it returns
// live in its segment and may be used until [Catalog.Close] (their own
// Close leaves the catalog alone).
type Catalog struct {
	_       noCopy
	seg     *Segment
	entries int
	bump    *atomic.Uint64
	data    int // offset in seg.Bytes() where values start
}

// catalogSize is the payload a catalog of size bytes for values takes.
func catalogSize(size int) int { return catHeader + entrySize*catEntries + size }

// NewCatalog returns an empty catalog with room for 64 names and size bytes
// of values, in an anonymous segment.
func NewCatalog(size int) (*Catalog, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	return initCatalog(KindCatalog.CreateAnonymous(catalogSize(size)))
}

// CreateCatalog returns an empty catalog with room for 64 names and size
// bytes of values, in a new named segment; see [Create].
func CreateCatalog(name string, size int, opts *Options) (*Catalog, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	// The catalog is built before its segment is named: an OpenCatalog
	// racing this finds it complete or finds no name.
	seg, err := KindCatalog.CreateInit(name, catalogSize(size), opts, fillCatalog)
	if err != nil {
		return nil, err
	}
	return CatalogAt(seg)
}

// OpenCatalog opens the catalog in the named segment made by [CreateCatalog].
func OpenCatalog(name string) (*Catalog, error) {
	seg, err := KindCatalog.Open(name)
	if err != nil {
		return nil, err
	}
	c, err := CatalogAt(seg)
	if err != nil {
		seg.Close()
	}
	return c, err
}

// fillCatalog builds an empty catalog in seg, a new segment not yet
// published (the fill of [Kind.CreateInit]).
func fillCatalog(seg *Segment) error {
	b := seg.Bytes()
	ptrAt[atomic.Uint32](b, catOffEntries).Store(catEntries)
	ptrAt[atomic.Uint64](b, catOffBump).Store(uint64(catHeader + entrySize*catEntries))
	ptrAt[atomic.Uint32](b, catOffMagic).Store(catMagic) // pairs with the load in CatalogAt
	return nil
}

// initCatalog builds an empty catalog in seg, a segment nobody else has
// yet (anonymous, or on the heap), and attaches to it.
func initCatalog(seg *Segment, err error) (*Catalog, error) {
	if err != nil {
		return nil, err
	}
	fillCatalog(seg)
	return CatalogAt(seg)
}

// CatalogAt attaches to the catalog that fills seg, after checking its
// layout: a segment that does not hold one is an error matching
// [ErrCorrupt] ([ErrBadMagic] or [ErrSize]). Closing the Catalog closes seg.
func CatalogAt(seg *Segment) (*Catalog, error) {
	b := seg.Bytes()
	n, data, err := catalogLayout(b)
	if err != nil {
		return nil, err
	}
	return &Catalog{seg: seg, entries: n, bump: ptrAt[atomic.Uint64](b, catOffBump), data: data}, nil
}

// catalogLayout checks the catalog header at the start of b, a payload,
// and returns its entry count and where its values start.
func catalogLayout(b []byte) (entries, data int, err error) {
	if len(b) < catHeader {
		return 0, 0, fmt.Errorf("%w: %d bytes cannot hold a catalog", ErrSize, len(b))
	}
	if m := ptrAt[atomic.Uint32](b, catOffMagic).Load(); m != catMagic {
		return 0, 0, fmt.Errorf("%w %#x: not a catalog", ErrBadMagic, m)
	}
	n := int(ptrAt[atomic.Uint32](b, catOffEntries).Load())
	data = catHeader + entrySize*n
	if n < 1 || n > 1<<16 || data > len(b) {
		return 0, 0, fmt.Errorf("%w: catalog of %d entries in %d bytes", ErrSize, n, len(b))
	}
	return n, data, nil
}

// Segment returns the catalog's segment.
func (c *Catalog) Segment() *Segment { return c.seg }

// Close closes the catalog's segment; the values it returned die with it.
// It is safe to call twice.
func (c *Catalog) Close() error { return c.seg.Close() }

// GobEncode encodes a handle to the catalog; see the package doc.
func (c *Catalog) GobEncode() ([]byte, error) { return c.seg.GobEncode() }

// GobDecode attaches c, which must be new, to the catalog a handle names.
func (c *Catalog) GobDecode(b []byte) error {
	var seg Segment
	if err := seg.GobDecode(b); err != nil {
		return err
	}
	o, err := CatalogAt(&seg)
	if err != nil {
		seg.Close()
		return err
	}
	c.seg, c.entries, c.bump, c.data = o.seg, o.entries, o.bump, o.data
	return nil
}

// entry is a view of table entry i.
type entry struct {
	b     []byte // the entry's 128 bytes
	state *atomic.Uint32
	owner *atomic.Uint64
}

func (c *Catalog) entry(i int) entry { return entryIn(c.seg.Bytes(), i) }

// entryIn is a view of table entry i of the catalog in payload p.
func entryIn(p []byte, i int) entry {
	b := p[catHeader+entrySize*i : catHeader+entrySize*(i+1)]
	return entry{b, ptrAt[atomic.Uint32](b, entryOffState), ptrAt[atomic.Uint64](b, entryOffOwner)}
}

// load returns e's state, entryClaiming included: a free state with an
// owner. The owner is loaded after the state, so a claim that the state
// load missed is seen (it precedes every state store).
func (e entry) load() uint32 {
	switch st := e.state.Load(); st {
	case entryFree:
		if e.owner.Load() != 0 {
			return entryClaiming
		}
		return st
	case entryClaiming:
		return entryCorrupt // never stored
	default:
		return st
	}
}

// set moves e, claimed by this process, to state st.
func (e entry) set(st uint32) { e.state.Store(st) }

// dead reports whether e's claimer is dead, or an error if its owner word
// is no token (corrupt memory). A claimer whose liveness cannot be proven
// is not dead.
func (e entry) dead() (bool, error) {
	t := liveness.Token(e.owner.Load())
	if !t.Valid() {
		return false, fmt.Errorf("shm: catalog entry claimed by %#x, which is no process: %w", uint64(t), ErrCorrupt)
	}
	return liveness.Check(t) == liveness.Dead, nil
}

func (e entry) name() string {
	n := min(int(ptrAt[atomic.Uint32](e.b, entryOffKindLen).Load()>>16), maxNameLen)
	return string(e.b[entryOffName : entryOffName+n])
}

// place finds the value called name, or makes it: size bytes aligned to
// align, of kind kind. It returns the value's offset in the segment.
func (c *Catalog) place(name string, kind Kind, size, align int) (int, error) {
	if name == "" || len(name) > maxNameLen {
		return 0, fmt.Errorf("shm: catalog name %q has %d bytes, want 1 to %d: %w", name, len(name), maxNameLen, os.ErrInvalid)
	}
	if err := checkSize(size); err != nil {
		return 0, err
	}
	for {
		off, err := c.find(name, kind, size, align)
		if err != errRetry {
			return off, err
		}
	}
}

func (c *Catalog) find(name string, kind Kind, size, align int) (int, error) {
	for i := 0; i < c.entries; i++ {
		e := c.entry(i)
		switch e.load() {
		case entryFree:
			me, err := liveness.Self()
			if err != nil {
				return 0, fmt.Errorf("shm: catalog: %w", err)
			}
			if !e.owner.CompareAndSwap(0, uint64(me)) {
				i-- // someone else claimed it: look at it again
				continue
			}
			return c.claim(i, e, name, kind, size, align)
		case entryClaiming:
			if err := c.settle(e); err != nil {
				return 0, err
			}
			i-- // its name is written now (or it was abandoned): look again
		case entryNamed, entryReady:
			if e.name() == name {
				return c.answer(e, kind, size)
			}
		}
	}
	return 0, fmt.Errorf("%w: all %d names are taken", ErrCatalogFull, c.entries)
}

// claim fills entry i, just claimed, for name.
func (c *Catalog) claim(i int, e entry, name string, kind Kind, size, align int) (int, error) {
	ptrAt[atomic.Uint64](e.b, entryOffSize).Store(uint64(size))
	copy(e.b[entryOffName:], name)
	ptrAt[atomic.Uint32](e.b, entryOffKindLen).Store(uint32(len(name))<<16 | uint32(kind))
	e.set(entryNamed) // pairs with the state loads in find and below
	// The same name below us was claimed first, and wins.
	for j := range i {
		d := c.entry(j)
		if err := c.settle(d); err != nil {
			e.set(entryAbandoned)
			return 0, err
		}
		if st := d.load(); (st == entryNamed || st == entryReady) && d.name() == name {
			e.set(entryAbandoned)
			return c.answer(d, kind, size)
		}
	}
	off, err := c.alloc(size, align)
	if err != nil {
		e.set(entryAbandoned)
		return 0, err
	}
	ptrAt[atomic.Uint64](e.b, entryOffOff).Store(uint64(off))
	e.set(entryReady)
	return off, nil
}

// settle waits while e is claiming, and abandons it if its claimer died.
// A claimer holds an entry in this state for a few stores only; one that is
// stopped (SIGSTOP) but alive, or whose liveness cannot be proven, makes
// others wait, as a held lock would (polling, backing off to catPollMax).
func (c *Catalog) settle(e entry) error {
	for poll := catPoll; ; poll = min(2*poll, catPollMax) {
		if e.load() != entryClaiming {
			return nil
		}
		dead, err := e.dead()
		if err != nil {
			return err
		}
		if dead {
			e.state.CompareAndSwap(entryFree, entryAbandoned)
			return nil
		}
		time.Sleep(poll)
	}
}

// answer waits for e, named as asked, to be ready, and checks that it holds
// what the caller asks for.
func (c *Catalog) answer(e entry, kind Kind, size int) (int, error) {
	for poll := catPoll; ; poll = min(2*poll, catPollMax) {
		switch e.state.Load() {
		case entryReady:
			word := ptrAt[atomic.Uint32](e.b, entryOffKindLen).Load()
			got, gotSize := Kind(word&0xffff), ptrAt[atomic.Uint64](e.b, entryOffSize).Load()
			if got != kind || gotSize != uint64(size) {
				return 0, fmt.Errorf("%w: %q holds a %v of %d bytes, not a %v of %d", ErrKind, e.name(), got, gotSize, kind, size)
			}
			off := ptrAt[atomic.Uint64](e.b, entryOffOff).Load()
			if off < uint64(c.data) || off > uint64(c.seg.Size()) || gotSize > uint64(c.seg.Size())-off {
				return 0, fmt.Errorf("shm: catalog entry %q: %d bytes at offset %d lie outside the values: %w", e.name(), gotSize, off, ErrCorrupt)
			}
			return int(off), nil
		case entryNamed:
			dead, err := e.dead()
			if err != nil {
				return 0, err
			}
			if dead {
				e.state.CompareAndSwap(entryNamed, entryAbandoned)
				return 0, errRetry
			}
			time.Sleep(poll)
		default:
			return 0, errRetry
		}
	}
}

// alloc takes size bytes aligned to align from the value area.
func (c *Catalog) alloc(size, align int) (int, error) {
	for {
		cur := c.bump.Load()
		off := (cur + uint64(align) - 1) &^ (uint64(align) - 1)
		if cur < uint64(c.data) || off > uint64(c.seg.Size()) || uint64(size) > uint64(c.seg.Size())-off {
			return 0, fmt.Errorf("%w: no room for %d bytes", ErrCatalogFull, size)
		}
		if c.bump.CompareAndSwap(cur, off+uint64(size)) {
			return int(off), nil
		}
	}
}

// Int32 returns the Int32 called name in the catalog, made zero by the
// first process to ask for it.
func (c *Catalog) Int32(name string) (*Int32, error) {
	off, err := c.place(name, KindInt32, 4, 4)
	if err != nil {
		return nil, err
	}
	return Int32At(c.seg, off)
}

// Int64 returns the Int64 called name in the catalog, made zero by the
// first process to ask for it.
func (c *Catalog) Int64(name string) (*Int64, error) {
	off, err := c.place(name, KindInt64, 8, 8)
	if err != nil {
		return nil, err
	}
	return Int64At(c.seg, off)
}

// Uint64 returns the Uint64 called name in the catalog, made zero by the
// first process to ask for it.
func (c *Catalog) Uint64(name string) (*Uint64, error) {
	off, err := c.place(name, KindUint64, 8, 8)
	if err != nil {
		return nil, err
	}
	return Uint64At(c.seg, off)
}

// Float64 returns the Float64 called name in the catalog, made zero by the
// first process to ask for it.
func (c *Catalog) Float64(name string) (*Float64, error) {
	off, err := c.place(name, KindFloat64, 8, 8)
	if err != nil {
		return nil, err
	}
	return Float64At(c.seg, off)
}

// CatalogArray returns the array of n elements called name in c, made of
// zeros by the first process to ask for it. Asking again with another n or
// element type is an [ErrKind] error.
func CatalogArray[T Elem](c *Catalog, name string, n int) (*Array[T], error) {
	kind, size := elemKind[T]()
	bytes, err := arraySize[T](n)
	if err != nil {
		return nil, err
	}
	off, err := c.place(name, kind, bytes, size)
	if err != nil {
		return nil, err
	}
	return ArrayAt[T](c.seg, off, n)
}
