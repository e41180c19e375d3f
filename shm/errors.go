package shm

import (
	"errors"
	"strings"

	"github.com/ipckit/ipckit/internal/sentinel"
	"github.com/ipckit/ipckit/internal/shmfile"
)

// Bad arguments (a name, size, offset, length or kind that cannot be) are
// not sentinels of this package: their errors wrap [os.ErrInvalid] and say
// which value was wrong and why.

// ErrCorrupt means shared memory does not hold what it should: a header,
// a catalog entry or an offset in it is impossible (corrupted or hostile).
// It is the same value as every ipckit package's ErrCorrupt. [ErrBadMagic],
// [ErrChecksum] and [ErrSize] are kinds of it: errors.Is(err, ErrCorrupt)
// holds for them too.
var ErrCorrupt = sentinel.ErrCorrupt

// Errors returned when a segment's header is invalid, in the order [Open]
// checks for them.
var (
	// ErrBadMagic means the segment does not start with ipckit's magic
	// number (or a catalog with the catalog's). It matches [ErrCorrupt].
	ErrBadMagic = newCorrupt("shm: bad magic number")
	// ErrVersion means the segment's layout version is not one this package reads.
	ErrVersion = errors.New("shm: unsupported layout version")
	// ErrKind means the segment holds another kind of object than the one asked for.
	ErrKind = errors.New("shm: wrong segment kind")
	// ErrChecksum means the header's fixed fields do not match their
	// checksum. It matches [ErrCorrupt].
	ErrChecksum = newCorrupt("shm: header checksum mismatch")
	// ErrSize means the sizes in the header do not match each other or the
	// file, as when another process truncated a named segment. It matches
	// [ErrCorrupt].
	ErrSize = newCorrupt("shm: segment size mismatch")
	// ErrNotReady means the segment's creator has not finished initialising it.
	ErrNotReady = errors.New("shm: segment not initialised")
)

// Other errors.
var (
	// ErrFault means a memory access faulted, as when another process
	// truncated a named segment under its users.
	ErrFault = errors.New("shm: memory fault")
	// ErrHeap means a heap segment was asked to travel to another process.
	ErrHeap = errors.New("shm: a heap segment cannot be shared with another process")
	// ErrCatalogFull means a Catalog has no free entry or no room for a value.
	ErrCatalogFull = errors.New("shm: catalog full")
)

// Errors returned by [Open] when the name is taken by something unfit. They
// come inside an [os.PathError] naming the file, and read after its path:
// "shm: open /dev/shm/ipckit.x: is a symbolic link".
var (
	// ErrSymlink means the name is a symbolic link, which Open never follows.
	ErrSymlink = shmfile.ErrSymlink
	// ErrNotRegular means the name is a directory, FIFO, device or socket.
	ErrNotRegular = shmfile.ErrNotRegular
	// ErrOwner means the file belongs to another user.
	ErrOwner = shmfile.ErrOwner
)

// corruptError is a sentinel that is a kind of [ErrCorrupt]: errors.Is
// matches it both as itself and as ErrCorrupt.
type corruptError struct{ msg string }

func newCorrupt(msg string) error { return &corruptError{msg} }

func (e *corruptError) Error() string { return e.msg }

// Is reports whether target is [ErrCorrupt].
func (e *corruptError) Is(target error) bool { return target == ErrCorrupt }

// opError is an error with the operation that failed, and its object, in
// front: "shm: open \"counter\": header checksum mismatch". The package
// prefix appears once: err's own "shm: " (every sentinel here has one) is
// not repeated. errors.Is and errors.As see err.
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string {
	return "shm: " + e.op + ": " + strings.TrimPrefix(e.err.Error(), "shm: ")
}

func (e *opError) Unwrap() error { return e.err }
