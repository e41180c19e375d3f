//go:build linux && (amd64 || arm64)

package liveness

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// getlk and fstat are the two system calls of Check, made raw: neither
// blocks (F_OFD_GETLK only reads the lock list; fstat of a tmpfs file only
// reads its inode), and a raw call does not tell the Go scheduler about a
// system call, which would wake its sysmon thread out of its idle sleep
// and cost a waiter's watcher far more than the call itself (see
// internal/robust, "Watching holders").
func getlk(fd uintptr, lk *unix.Flock_t) error {
	_, _, e := unix.RawSyscall(unix.SYS_FCNTL, fd, unix.F_OFD_GETLK, uintptr(unsafe.Pointer(lk)))
	if e != 0 {
		return e
	}
	return nil
}

func fstat(fd uintptr, st *unix.Stat_t) error {
	_, _, e := unix.RawSyscall(unix.SYS_FSTAT, fd, uintptr(unsafe.Pointer(st)), 0)
	if e != 0 {
		return e
	}
	return nil
}
