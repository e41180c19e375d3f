package ipcmap

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// Options configures the creation of a map: its fixed capacity. A nil
// *Options, like the zero Options, means the defaults. The constructors
// only read it, during the call: it may be shared and reused.
type Options struct {
	// Entries is the most keys the map holds at once (default 1024).
	Entries int
	// Bytes is the room for keys and values (default 1 MiB). Each entry
	// takes 8 bytes plus its key rounded up to 8 bytes plus its value,
	// rounded up to 16, in one contiguous run (see the package doc,
	// "Capacity").
	Bytes int
	// Mode is the permission of a named map's file (default 0600). It
	// applies to [Create] only.
	Mode os.FileMode
}

// Default capacity, used where [Options] leaves a field zero.
const (
	DefaultEntries = 1024    // the default of Options.Entries
	DefaultBytes   = 1 << 20 // the default of Options.Bytes
)

func (o *Options) geometry() (geometry, error) {
	entries, bytes := DefaultEntries, DefaultBytes
	if o != nil {
		if o.Entries != 0 {
			entries = o.Entries
		}
		if o.Bytes != 0 {
			bytes = o.Bytes
		}
	}
	return geometryFor(entries, bytes)
}

// Map is a handle to a hash map of byte keys and byte values in shared
// memory. Get one from [New], [NewHeap], [Create], [Open] or by
// gob-decoding a handle (see [Map.GobDecode]). The zero Map is a closed
// handle: every call on it returns an error wrapping [os.ErrClosed].
//
// A Map is safe for concurrent use by any number of goroutines, and its
// map by any number of processes, each through its own handle. That
// includes [Map.Close], which releases the mapping once no call on the
// handle is in progress. A Map must not be copied (go vet catches copies):
// pass the pointer.
//
// Slices: no call retains a key or value it is given. Every value or key
// it returns is a new slice that belongs to the caller (or, for
// [Map.AppendValue], the caller's buffer); no call returns shared memory.
type Map struct {
	_ noCopy

	seg *shm.Segment
	w   words

	open      atomic.Bool
	calls     atomic.Int64 // calls in progress on this handle
	closer    robust.Closer
	closeOnce sync.Once
	closeErr  error

	faults faults
}

// noCopy makes go vet's copylocks check report copies of a Map.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// build makes a map with opts' capacity in a segment made by mk(n, fill),
// which must call fill on it before anyone else can reach it.
func build(opts *Options, mk func(n int, fill func(*shm.Segment) error) (*shm.Segment, error)) (*Map, error) {
	g, err := opts.geometry()
	if err != nil {
		return nil, err
	}
	if g.size() > shm.MaxSize {
		return nil, fmt.Errorf("ipcmap: a map of %d entries and %d chunks needs %d bytes, more than %d: %w",
			g.entries, g.chunks, g.size(), shm.MaxSize, errInvalid)
	}
	seg, err := mk(int(g.size()), func(seg *shm.Segment) error {
		writeGeometry(seg.Bytes(), g)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return attach(seg)
}

// New makes an empty map in an anonymous segment: it reaches other
// processes only as an argument of a child started by spawn, and its
// memory is freed when the last process using it exits. A capacity out of
// range is an error wrapping [os.ErrInvalid]; opts.Mode does not apply.
func New(opts *Options) (*Map, error) {
	return build(opts, shm.KindMap.CreateAnonymousInit)
}

// NewHeap makes a map as [New] does, on the Go heap: for one process only,
// where the race detector sees every access.
func NewHeap(opts *Options) (*Map, error) {
	return build(opts, shm.KindMap.NewHeapInit)
}

// Create makes a new, empty named map; it fails with an error wrapping
// [os.ErrExist] if the name is taken. The map is complete before it has
// its name: an [Open] racing Create finds it whole or not at all. Remove
// it with [Remove].
func Create(name string, opts *Options) (*Map, error) {
	var so *shm.Options
	if opts != nil {
		so = &shm.Options{Mode: opts.Mode}
	}
	return build(opts, func(n int, fill func(*shm.Segment) error) (*shm.Segment, error) {
		return shm.KindMap.CreateInit(name, n, so, fill)
	})
}

// Open attaches to the named map made by [Create], after validating its
// layout (an invalid one is [ErrCorrupt]).
func Open(name string) (*Map, error) {
	seg, err := shm.KindMap.Open(name)
	if err != nil {
		return nil, err
	}
	m, err := attach(seg)
	if err != nil {
		return nil, fmt.Errorf("ipcmap: open %q: %w", name, err)
	}
	return m, nil
}

// Remove deletes the named map's file; handles keep working until they are
// closed.
func Remove(name string) error { return shm.Remove(name) }

// attach returns a handle that owns seg (closing seg if it fails).
func attach(seg *shm.Segment) (*Map, error) {
	m := new(Map)
	if err := m.attachTo(seg); err != nil {
		seg.Close()
		return nil, err
	}
	return m, nil
}

// attachTo validates seg's layout and fills the zero handle m for it.
func (m *Map) attachTo(seg *shm.Segment) error {
	b := seg.Bytes()
	g, err := readGeometry(b)
	if err != nil {
		return err
	}
	w := view(b, g)
	w.lock, err = robust.At(b[offLock:offLock+robust.Size], &robust.Options{Closer: &m.closer, Internal: true})
	if err != nil {
		return err
	}
	m.seg, m.w = seg, w
	m.open.Store(true)
	return nil
}

// Segment returns the segment the map lives in.
func (m *Map) Segment() *shm.Segment { return m.seg }

// Close releases this handle: its mapping, once no call on it is in
// progress (a writer waiting for the lock is woken with an error wrapping
// [os.ErrClosed]). The map and every other handle go on working. Close is
// safe to call twice.
func (m *Map) Close() error {
	m.closeOnce.Do(func() {
		if m.seg == nil {
			return
		}
		m.open.Store(false)
		m.closer.Close(m.w.lock.Sleepers())
		for pause := time.Microsecond; m.calls.Load() != 0; pause = min(2*pause, time.Millisecond) {
			time.Sleep(pause)
		}
		m.closeErr = m.seg.Close()
	})
	return m.closeErr
}

// enter starts a call on m; every call that returns nil must be paired
// with leave. It returns errClosed on a closed (or zero) handle.
func (m *Map) enter() error {
	m.calls.Add(1)
	if !m.open.Load() {
		m.calls.Add(-1)
		return errClosed
	}
	return nil
}

func (m *Map) leave() { m.calls.Add(-1) }

// Len returns the number of entries: a snapshot, exact between writes.
func (m *Map) Len() (int, error) {
	if err := m.enter(); err != nil {
		return 0, err
	}
	defer m.leave()
	n := m.w.live.Load()
	if n > m.w.g.entries {
		return 0, fmt.Errorf("ipcmap: %d entries in a map of %d: %w", n, m.w.g.entries, ErrCorrupt)
	}
	return int(n), nil
}

// Stats are a map's capacity and use, a snapshot.
type Stats struct {
	Entries    int    // entries now (Len)
	MaxEntries int    // the most entries the map holds
	Bytes      int    // room for records, in bytes ([Options.Bytes] rounded down to 16)
	UsedBytes  int    // bytes the records now take
	Deaths     uint64 // writers that died inside a write, found and repaired by another
}

// Stats returns the map's capacity and use.
func (m *Map) Stats() (Stats, error) {
	if err := m.enter(); err != nil {
		return Stats{}, err
	}
	defer m.leave()
	return m.w.stats(), nil
}

// stats loads the map's counters, each clamped to what the map's shape
// allows (a corrupt counter reads as its bound, not as a negative or
// impossible figure).
func (w *words) stats() Stats {
	g := w.g
	return Stats{
		Entries:    int(min(w.live.Load(), g.entries)),
		MaxEntries: int(g.entries),
		Bytes:      int(g.chunks * chunkSize),
		UsedBytes:  int(min(w.used.Load(), g.chunks) * chunkSize),
		Deaths:     w.deaths.Load(),
	}
}
