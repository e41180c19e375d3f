//go:build linux

package shmfile

import (
	"os"
	"path/filepath"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Create makes an unnamed file in the directory of path (O_TMPFILE), sets
// its mode with fchmod so the umask cannot change it, and reserves size
// bytes with fallocate so a full tmpfs fails here rather than with SIGBUS on
// first touch. The caller fills the file, then gives it its name with
// [Publish]: nobody can open a half-made file. On error nothing is left
// behind.
func Create(path string, size int64, mode os.FileMode) (*os.File, error) {
	fd, err := unix.Open(filepath.Dir(path), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, uint32(mode.Perm()))
	if err != nil {
		return nil, pathErr("create", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := setup(f, size, mode); err != nil {
		f.Close()
		return nil, pathErr("create", path, err)
	}
	return f, nil
}

// Publish gives f, made by [Create], the name path, exclusively: it fails
// with an error wrapping [os.ErrExist] if anything (a file, a symbolic
// link, ...) already has that name, and never follows a link there.
func Publish(f *os.File, path string) error {
	// linkat with AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link
	// of the descriptor does not.
	proc := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW); err != nil {
		return pathErr("create", path, err)
	}
	return nil
}

func setup(f *os.File, size int64, mode os.FileMode) error {
	fd := int(f.Fd())
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return err
	}
	return reserve(fd, size)
}

// reserve sets the file's size and allocates its pages.
func reserve(fd int, size int64) error {
	if err := unix.Ftruncate(fd, size); err != nil {
		return err
	}
	for {
		err := unix.Fallocate(fd, 0, 0, size)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EOPNOTSUPP {
			return nil // some filesystems cannot reserve; the size is set
		}
		return err
	}
}

// Open opens an existing named file for reading and writing. It refuses a
// symbolic link, anything but a regular file, and a file owned by another
// user, and says which.
func Open(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		switch err {
		case unix.ELOOP:
			err = ErrSymlink
		case unix.EISDIR, unix.ENXIO:
			err = ErrNotRegular
		}
		return nil, pathErr("open", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, pathErr("open", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		err = ErrNotRegular
	case st.Uid != uint32(os.Geteuid()):
		err = ErrOwner
	}
	if err != nil {
		unix.Close(fd)
		return nil, pathErr("open", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Remove unlinks the named file.
func Remove(path string) error {
	if err := unix.Unlink(path); err != nil {
		return pathErr("remove", path, err)
	}
	return nil
}

// CreateAnonymous makes a memfd of size bytes, reserved like [Create], and
// sealed so that nobody can shrink or grow it (a shrink would turn every
// mapping's access past the new end into SIGBUS). It vanishes when the last
// descriptor and mapping of it are gone, whatever way its holders die.
func CreateAnonymous(name string, size int64) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	if err := reserve(fd, size); err != nil {
		f.Close()
		return nil, os.NewSyscallError("fallocate", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, os.NewSyscallError("fcntl(F_ADD_SEALS)", err)
	}
	return f, nil
}

// Size returns the current size of the file and how many of its bytes have
// memory allocated (less than size for a sparse file).
func Size(f *os.File) (size, allocated int64, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, 0, os.NewSyscallError("fstat", err)
	}
	return st.Size, st.Blocks * 512, nil
}

// Retire ends the mapping b, made by [Map], by replacing it with an
// inaccessible reservation of the same addresses, so that a stale use of b
// faults instead of reaching whatever the kernel would map there next. The
// reservation holds no memory and is never lifted: the addresses stay
// reserved for the life of the process, and so does the record of b that
// golang.org/x/sys/unix keeps for mmap-go (no later mapping can have its
// addresses, so the record never misleads an Unmap).
//
// It is a single mmap(MAP_FIXED) over b, atomic in the kernel: there is no
// instant at which the addresses are free for another mapping to take, as
// there would be between an [Unmap] and a new reservation.
func Retire(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, err := unix.MmapPtr(-1, 0, unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)), unix.PROT_NONE,
		unix.MAP_FIXED|unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return os.NewSyscallError("mmap", err)
	}
	return nil
}

// Regular reports whether f is a regular file (a memfd is one).
func Regular(f *os.File) bool {
	var st unix.Stat_t
	return unix.Fstat(int(f.Fd()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG
}

// Inherit returns the file for descriptor fd, inherited from the parent, after
// checking that it is open, and marks it close-on-exec.
func Inherit(fd int, name string) (*os.File, error) {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("fcntl(F_SETFD)", err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// Dup returns a new close-on-exec descriptor for the same open file.
func Dup(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
