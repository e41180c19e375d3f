//go:build linux

package shmfile

import (
	"os"
	"time"

	"github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"
)

// Read-only access
//
// An inspector (cmd/ipcs) must look at any file it finds in /dev/shm, and
// at the anonymous segments other processes hold, without changing them,
// without hanging on them and without following them anywhere. So
// [OpenReadOnly] opens with O_RDONLY|O_NONBLOCK (a FIFO opens at once
// instead of waiting for a writer) and, for a name in a directory,
// O_NOFOLLOW; it fstats the descriptor before anything else, refuses what
// is not a regular file, and [MapReadOnly] maps PROT_READ only: a stray
// store would fault rather than change the segment.

// Stat is what fstat says of an open file.
type Stat struct {
	Dev, Ino uint64      // identity: the same file in every process's /proc views
	Size     int64       // bytes
	Blocks   int64       // bytes allocated (less than Size for a sparse file)
	Mode     os.FileMode // type and permission bits
	UID, GID uint32
	Created  time.Time // birth time; the last status change where the filesystem keeps none
}

// OpenReadOnly opens path for reading and returns it with its Stat. With
// follow false a symbolic link is refused ([ErrSymlink]); follow is for the
// links of /proc/PID/fd, which name the open file itself. Anything but a
// regular file is [ErrNotRegular] (its Stat still filled in); other users'
// files are opened if their mode allows.
func OpenReadOnly(path string, follow bool) (*os.File, Stat, error) {
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		switch err {
		case unix.ELOOP:
			err = ErrSymlink
		case unix.ENXIO: // a socket, or a FIFO nobody could open
			err = ErrNotRegular
		}
		return nil, Stat{}, pathErr("open", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, Stat{}, pathErr("open", path, err)
	}
	s := Stat{
		Dev: st.Dev, Ino: st.Ino, Size: st.Size, Blocks: st.Blocks * 512,
		Mode: fileMode(st.Mode), UID: st.Uid, GID: st.Gid,
		Created: time.Unix(st.Ctim.Unix()),
	}
	var sx unix.Statx_t
	if unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BTIME, &sx) == nil && sx.Mask&unix.STATX_BTIME != 0 {
		s.Created = time.Unix(sx.Btime.Sec, int64(sx.Btime.Nsec))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, s, pathErr("open", path, ErrNotRegular)
	}
	return os.NewFile(uintptr(fd), path), s, nil
}

// fileMode converts a stat mode to an os.FileMode.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	}
	return mode
}

// MapReadOnly maps the first size bytes of f, shared and read-only: a
// store to the mapping faults. End it with [Unmap].
func MapReadOnly(f *os.File, size int) ([]byte, error) {
	b, err := mmap.MapRegion(f, size, mmap.RDONLY, 0, 0)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return b, nil
}
