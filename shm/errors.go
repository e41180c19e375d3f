package shm

import (
	"errors"

	"github.com/ipckit/ipckit/internal/shmfile"
)

// Errors returned when a segment's header is invalid, in the order [Open]
// checks for them.
var (
	// ErrBadMagic means the segment does not start with ipckit's magic number.
	ErrBadMagic = errors.New("shm: bad magic number: not an ipckit segment")
	// ErrVersion means the segment's layout version is not one this package reads.
	ErrVersion = errors.New("shm: unsupported layout version")
	// ErrKind means the segment holds another kind of object than the one asked for.
	ErrKind = errors.New("shm: wrong segment kind")
	// ErrChecksum means the header's fixed fields do not match their checksum.
	ErrChecksum = errors.New("shm: header checksum mismatch")
	// ErrSize means the sizes in the header do not match each other or the file.
	ErrSize = errors.New("shm: segment size mismatch")
	// ErrNotReady means the segment's creator has not finished initialising it.
	ErrNotReady = errors.New("shm: segment not initialised")
)

// Other errors.
var (
	// ErrName means a segment name is not 1 to 200 of [A-Za-z0-9._-].
	ErrName = errors.New("shm: invalid segment name")
	// ErrRange means an offset, length or size is out of range.
	ErrRange = errors.New("shm: out of range")
	// ErrAlign means an offset is not aligned for the value placed there.
	ErrAlign = errors.New("shm: misaligned offset")
	// ErrFault means a memory access faulted, as when another process
	// truncated a named segment under its users.
	ErrFault = errors.New("shm: memory fault")
	// ErrHeap means a heap segment was asked to travel to another process.
	ErrHeap = errors.New("shm: a heap segment cannot be shared with another process")
)

// Errors returned by [Open] when the name is taken by something unfit.
var (
	// ErrSymlink means the name is a symbolic link, which Open never follows.
	ErrSymlink = shmfile.ErrSymlink
	// ErrNotRegular means the name is a directory, FIFO, device or socket.
	ErrNotRegular = shmfile.ErrNotRegular
	// ErrOwner means the file belongs to another user.
	ErrOwner = shmfile.ErrOwner
)
