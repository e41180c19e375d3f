package shm

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/ipckit/ipckit/internal/proc"
	"github.com/ipckit/ipckit/internal/shmfile"
)

// Segment is a region of shared memory with an ipckit header. The header is
// hidden: [Segment.Bytes] is the caller's part.
//
// The zero Segment is not usable: get one from [Create], [Open],
// [CreateAnonymous] or [NewHeap] (or a Kind's methods of the same names), or
// decode a handle into a new one with [Segment.GobDecode].
//
// A *Segment is safe for concurrent use by goroutines. The bytes it returns
// are shared with every goroutine and process that maps the segment, so
// access to them needs atomics or a lock. A Segment must not be copied (go
// vet catches copies): pass the pointer.
//
// The slice [Segment.Bytes] returns stays valid until [Segment.Close]; a
// use of it after that faults (see [Guard]) rather than reaching other
// memory.
type Segment struct {
	_ noCopy

	name string   // named segments only
	file *os.File // nil for heap segments
	mem  []byte   // header and payload: the whole mapping or heap buffer
	kind Kind

	mu     sync.Mutex
	closed bool
}

// Options configures the creation of a named segment and of the objects
// built on one. A nil *Options, like the zero Options, means the defaults.
// The functions that take one only read it, during the call: it may be
// shared and reused.
type Options struct {
	// Mode is the permission of a named segment's file (default 0600). It is
	// applied with fchmod, so the umask cannot change it.
	Mode os.FileMode
}

func (o *Options) mode() os.FileMode {
	if o == nil || o.Mode == 0 {
		return 0o600
	}
	return o.Mode.Perm()
}

// MaxSize is the largest payload a segment may hold.
const MaxSize = 1 << 40

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// namePrefix is put before a segment's name to make its file name in
// /dev/shm, so ipckit never touches other software's segments and its own
// are easy to list.
const namePrefix = "ipckit."

// Path returns the file that backs the named segment name.
func Path(name string) string { return shmfile.Path(namePrefix + name) }

func checkName(name string) error {
	if !nameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("shm: segment name %q, want 1 to 200 of [A-Za-z0-9._-], not . or ..: %w", name, os.ErrInvalid)
	}
	return nil
}

func checkSize(size int) error {
	if size < 0 || size > MaxSize {
		return fmt.Errorf("shm: size %d, want 0 to %d: %w", size, MaxSize, os.ErrInvalid)
	}
	return nil
}

// checkCreate checks the kind k and payload size of a segment to be created.
func (k Kind) checkCreate(size int) error {
	if err := checkSize(size); err != nil {
		return err
	}
	if !k.valid() {
		return fmt.Errorf("shm: cannot create a segment of kind %v: %w", k, os.ErrInvalid)
	}
	return nil
}

// Create makes a new named segment with size bytes for the caller, zeroed.
// It fails with an error wrapping [os.ErrExist] if the name is taken: create
// is exclusive and never follows a symbolic link. The file is created with
// mode 0600 unless opts says otherwise, and its memory is reserved now, so
// a full /dev/shm is an error here rather than a SIGBUS later. The segment
// is built in an unnamed file and given its name only when complete, so
// [Open] never sees it half made. A name that is not 1 to 200 of
// [A-Za-z0-9._-], or a size outside 0 to [MaxSize], is an error wrapping
// [os.ErrInvalid].
func Create(name string, size int, opts *Options) (*Segment, error) {
	return KindBytes.Create(name, size, opts)
}

// Create makes a new named segment of kind k, as the package-level [Create]
// does; [Kind.Open] then accepts it. Packages that build objects on
// segments use it so that opening the wrong object fails with [ErrKind].
// [KindAny] and unknown kinds cannot be created: an error wrapping
// [os.ErrInvalid].
func (k Kind) Create(name string, size int, opts *Options) (*Segment, error) {
	return k.CreateInit(name, size, opts, nil)
}

// CreateInit makes a new named segment of kind k, as [Kind.Create] does,
// and calls fill with it (if fill is not nil) before the segment is
// published: before its header says ready and before it has its name. So
// an object built on the segment is complete before anyone can open it,
// and an opener racing the creator finds the object whole or finds no name
// ([os.ErrNotExist]), never one half built. Packages that build objects
// with a fixed part (a queue's control block, a semaphore's magic) use it
// for that.
//
// fill may use seg.Bytes(); until it returns, [Segment.Check] reports
// [ErrNotReady]. If fill returns an error, CreateInit closes the segment
// and returns that error as it is; nothing is left behind, and neither is
// anything if the creating process dies before CreateInit returns (the
// file has no name until then).
func (k Kind) CreateInit(name string, size int, opts *Options, fill func(seg *Segment) error) (*Segment, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := k.checkCreate(size); err != nil {
		return nil, err
	}
	path := Path(name)
	f, err := shmfile.Create(path, int64(headerSize+size), opts.mode())
	if err != nil {
		return nil, fmt.Errorf("shm: %w", err)
	}
	s, err := initMapped(f, headerSize+size, k, fill)
	if err != nil {
		return nil, err
	}
	// Only a complete segment gets its name: Open never sees one half made.
	if err := shmfile.Publish(f, path); err != nil {
		s.Close()
		return nil, fmt.Errorf("shm: %w", err)
	}
	s.name = name
	return s, nil
}

// CreateAnonymous makes a segment with size bytes, zeroed, on a memfd. It has
// no name: it reaches other processes only in the argument of a child started
// by spawn, and its memory is freed when the last process holding it exits,
// even by SIGKILL. It is sealed so that nobody can shrink it.
func CreateAnonymous(size int) (*Segment, error) { return KindBytes.CreateAnonymous(size) }

// CreateAnonymous makes an anonymous segment of kind k, as the package-level
// [CreateAnonymous] does.
func (k Kind) CreateAnonymous(size int) (*Segment, error) {
	if err := k.checkCreate(size); err != nil {
		return nil, err
	}
	f, err := shmfile.CreateAnonymous(memfdName, int64(headerSize+size))
	if err != nil {
		return nil, fmt.Errorf("shm: %w", err)
	}
	return initMapped(f, headerSize+size, k, nil)
}

// NewHeap makes a segment of size bytes on the Go heap. It works like any
// other segment inside this process, and the race detector sees every access
// to it, but it cannot be passed to another process.
func NewHeap(size int) (*Segment, error) { return KindBytes.NewHeap(size) }

// NewHeap makes a heap segment of kind k, as the package-level [NewHeap]
// does.
func (k Kind) NewHeap(size int) (*Segment, error) {
	if err := k.checkCreate(size); err != nil {
		return nil, err
	}
	s := &Segment{mem: heapBytes(headerSize + size), kind: k}
	s.writeHeader(k)
	s.markReady()
	return s, nil
}

// initMapped maps f, a new file of total bytes, and builds a segment of
// kind in it: the header, then fill (if not nil), then the ready state.
// On error it closes f and returns fill's error as it is.
func initMapped(f *os.File, total int, kind Kind, fill func(*Segment) error) (*Segment, error) {
	mem, err := shmfile.Map(f, total)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("shm: %w", err)
	}
	s := &Segment{file: f, mem: mem, kind: kind}
	s.writeHeader(kind)
	if fill != nil {
		if err := fill(s); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.markReady()
	return s, nil
}

// writeHeader fills the fixed fields of a new segment's header; the state
// stays stateInit (zero) until markReady.
func (s *Segment) writeHeader(kind Kind) {
	id := proc.Self()
	encodeHeader(s.mem, &header{
		Magic: magic, Version: version, Kind: kind,
		Size: uint64(len(s.mem)), Payload: headerSize,
		Pid: id.Pid, Started: id.Start,
	})
}

// markReady publishes a new segment: the header's fixed fields and
// everything fill wrote. The atomic state store, last, pairs with the
// atomic state load in validate, which comes before every other read of
// the segment by an opener.
func (s *Segment) markReady() { stateWord(s.mem).Store(stateReady) }

// Open maps the existing named segment name after validating its header. It
// refuses a symbolic link ([ErrSymlink]), a non-regular file
// ([ErrNotRegular]), a file owned by another user ([ErrOwner]), a sparse
// file, and a header that is invalid, with one of [ErrBadMagic],
// [ErrVersion], [ErrKind], [ErrChecksum], [ErrSize] or [ErrNotReady] (the
// first, fourth and fifth also match [ErrCorrupt]). A missing name is an
// error wrapping [os.ErrNotExist]; a bad name, one wrapping [os.ErrInvalid].
func Open(name string) (*Segment, error) { return KindAny.Open(name) }

// Open maps the existing named segment name, as the package-level [Open]
// does, and fails with [ErrKind] unless it holds kind k ([KindAny] accepts
// every kind).
func (k Kind) Open(name string) (*Segment, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, err := shmfile.Open(Path(name))
	if err != nil {
		return nil, fmt.Errorf("shm: %w", err)
	}
	s, err := openFile(f, k)
	if err != nil {
		f.Close()
		return nil, &opError{op: fmt.Sprintf("open %q", name), err: err}
	}
	s.name = name
	return s, nil
}

// openFile maps f and validates its header. f is complete: [Create] names a
// segment only once it is built, and an anonymous one travels only after.
func openFile(f *os.File, want Kind) (*Segment, error) {
	size, allocated, err := shmfile.Size(f)
	switch {
	case err != nil:
		return nil, err
	case size < headerSize:
		return nil, fmt.Errorf("%w: %d bytes cannot hold a %d-byte header", ErrSize, size, headerSize)
	case size > MaxSize+headerSize:
		return nil, fmt.Errorf("%w: %d bytes is over the limit", ErrSize, size)
	case allocated < size:
		// A sparse file would SIGBUS on a full tmpfs: ipckit reserves its own.
		return nil, fmt.Errorf("%w: only %d of %d bytes allocated", ErrSize, allocated, size)
	}
	mem, err := shmfile.Map(f, int(size))
	if err != nil {
		return nil, err
	}
	// validate loads the state word first, atomically: that load pairs
	// with the store in markReady, so what it reads after is complete.
	h, err := validate(mem, want)
	if err != nil {
		shmfile.Unmap(mem)
		return nil, err
	}
	return &Segment{file: f, mem: mem, kind: h.Kind}, nil
}

// Remove deletes the named segment. Processes that have it open keep their
// mapping; the memory is freed when the last of them closes it.
func Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := shmfile.Remove(Path(name)); err != nil {
		return fmt.Errorf("shm: %w", err)
	}
	return nil
}

// Bytes returns the caller's part of the segment. The slice stays valid until
// [Segment.Close]; using it after that faults (see [Guard]).
func (s *Segment) Bytes() []byte { return s.mem[headerSize:] }

// Size returns len(s.Bytes()).
func (s *Segment) Size() int { return len(s.mem) - headerSize }

// Name returns the segment's name, or "" for an anonymous or heap segment.
func (s *Segment) Name() string { return s.name }

// Kind returns what the segment's header says it holds.
func (s *Segment) Kind() Kind { return s.kind }

// Close unmaps the segment. It is safe to call twice; the second call does
// nothing. A mapped segment's addresses stay reserved, so a stale use of its
// bytes or of a value in it faults (see [Guard]) rather than touching other
// memory; a heap segment's memory stays with the garbage collector. Close
// does not remove a named segment: see [Remove].
func (s *Segment) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.file == nil {
		return nil
	}
	// Keep the addresses reserved: a value still pointing here then faults
	// rather than reaching a segment mapped later at the same place.
	err := errors.Join(shmfile.Retire(s.mem), s.file.Close())
	if err != nil {
		return fmt.Errorf("shm: close: %w", err)
	}
	return nil
}

// Check re-reads the segment's file size and header and returns an error if
// either has changed since the segment was mapped: for a named segment that
// another process truncated, [ErrSize]; for a corrupted header, the error
// [Open] would give; after [Segment.Close], [os.ErrClosed].
func (s *Segment) Check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("shm: check: %w", os.ErrClosed)
	}
	if s.file != nil {
		size, _, err := shmfile.Size(s.file)
		if err != nil {
			return fmt.Errorf("shm: check: %w", err)
		}
		if size != int64(len(s.mem)) {
			return fmt.Errorf("%w: file now has %d bytes, %d are mapped", ErrSize, size, len(s.mem))
		}
	}
	_, err := validate(s.mem, s.kind)
	return err
}

// Guard runs f and returns [ErrFault] if it faulted on memory (as when it
// touched a segment that another process truncated), instead of crashing the
// process. Other panics pass through, a nil pointer dereference included.
//
// The runtime panics on a fault with a value that carries the faulting
// address, except for an address below 4096: then it panics with the very
// value of a nil dereference (runtime.panicmem), whatever the signal, and
// nothing in that value tells a SIGBUS from a SIGSEGV. Linux reports the
// real address of a SIGBUS past the end of a file, but qemu-user (arm64
// binaries emulated on amd64, as CI runs them) reports 0. So the first time
// Guard recovers that value it learns, once per process, whether this
// platform reports a SIGBUS's address, by faulting on purpose past the end of
// a mapped empty file (sigbusWithoutAddr). Where it does (real hardware), the
// value is a nil dereference and passes through. Where it does not, Guard
// returns ErrFault for it: on such a platform a nil dereference inside f is
// reported as ErrFault too, since nothing tells the two apart.
func Guard(f func()) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(interface{ Addr() uintptr }); ok {
				err = fmt.Errorf("%w at %#x", ErrFault, e.Addr())
				return
			}
			if isNilDeref(r) && sigbusWithoutAddr() {
				err = fmt.Errorf("%w at an address this platform does not report (a SIGBUS under an emulator, or a nil dereference)", ErrFault)
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}

// isNilDeref reports whether r is the runtime's panic value for a fault
// below address 4096: a runtime.Error with the text of a nil dereference and
// no address.
func isNilDeref(r any) bool {
	e, ok := r.(runtime.Error)
	_, hasAddr := r.(interface{ Addr() uintptr })
	return ok && !hasAddr && e.Error() == "runtime error: invalid memory address or nil pointer dereference"
}

// sigbusWithoutAddr reports whether this platform delivers a SIGBUS past the
// end of a mapped file without its address (see [Guard]). It maps one page of
// an empty temporary file and reads it, once per process; if that cannot be
// set up it reports false, and Guard keeps passing the value through.
var sigbusWithoutAddr = sync.OnceValue(func() (lost bool) {
	f, err := os.CreateTemp("", "ipckit-guard-probe-")
	if err != nil {
		return false
	}
	os.Remove(f.Name())
	defer f.Close()
	mem, err := shmfile.Map(f, os.Getpagesize())
	if err != nil {
		return false
	}
	defer shmfile.Unmap(mem)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() { lost = isNilDeref(recover()) }()
	// An atomic load, which the compiler keeps; it faults: the file has no
	// byte there.
	ptrAt[atomic.Uint32](mem, 0).Load()
	return false
})

// noCopy makes go vet's copylocks check report copies of the types holding it.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
