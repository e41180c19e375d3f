//go:build linux

package spawn

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// checkFD checks that descriptor fd, inherited from the parent, is open and
// is a FIFO (fifo) or a regular file (a memfd is one). A child whose
// descriptors are not what its parent meant to pass (a missing one, so that
// the number now names some file of the runtime's) fails its setup instead
// of adopting the wrong file. It must run before the descriptor is marked
// close-on-exec.
func checkFD(fd int, what string, fifo bool) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fmt.Errorf("spawn: %s (descriptor %d): %w", what, fd, os.NewSyscallError("fstat", err))
	}
	want, wantName := uint32(syscall.S_IFREG), "a regular file"
	if fifo {
		want, wantName = syscall.S_IFIFO, "a pipe"
	}
	if got := st.Mode & syscall.S_IFMT; got != want {
		return fmt.Errorf("spawn: %s (descriptor %d) is %s, not %s", what, fd, fileType(got), wantName)
	}
	// What exec passed on is never close-on-exec; a descriptor that is
	// was opened by this process's own start-up (the runtime keeps the
	// cgroup CPU quota file open, a regular file, at the lowest free
	// number), so the parent's did not arrive.
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	if errno != 0 {
		return fmt.Errorf("spawn: %s (descriptor %d): %w", what, fd, os.NewSyscallError("fcntl", errno))
	}
	if flags&syscall.FD_CLOEXEC != 0 {
		return fmt.Errorf("spawn: %s (descriptor %d) was not inherited (it is close-on-exec: %s)", what, fd, fdPath(fd))
	}
	return nil
}

func fdPath(fd int) string {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "?"
	}
	return p
}

func fileType(m uint32) string {
	switch m {
	case syscall.S_IFREG:
		return "a regular file"
	case syscall.S_IFIFO:
		return "a pipe"
	case syscall.S_IFSOCK:
		return "a socket"
	case syscall.S_IFCHR:
		return "a character device"
	case syscall.S_IFDIR:
		return "a directory"
	case 0:
		return "an anonymous inode"
	}
	return fmt.Sprintf("of type %#o", m)
}

// closeStray closes every descriptor from first up that is not
// close-on-exec: descriptors the parent process held without O_CLOEXEC
// (opened by C-style code, or inherited by the parent itself), which the
// parent did not mean to pass and which would otherwise stay open in the
// child, and in everything it starts, for their whole lives. The Go
// runtime and the os package open every descriptor close-on-exec, so
// nothing the child's own code holds is touched.
func closeStray(first int) error {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("spawn: list inherited descriptors: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("spawn: list inherited descriptors: %w", err)
	}
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd < first {
			continue
		}
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno != 0 {
			continue // closed meanwhile (the listing's own descriptor)
		}
		if flags&syscall.FD_CLOEXEC == 0 {
			syscall.Close(fd)
		}
	}
	return nil
}
