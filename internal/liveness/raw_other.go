//go:build linux && !(amd64 || arm64)

package liveness

import "golang.org/x/sys/unix"

// getlk and fstat: see raw_64.go. On other architectures (not supported by
// ipckit, but they must compile and work) the library's wrappers pick the
// right system call and struct layout.
func getlk(fd uintptr, lk *unix.Flock_t) error { return unix.FcntlFlock(fd, unix.F_OFD_GETLK, lk) }

func fstat(fd uintptr, st *unix.Stat_t) error { return unix.Fstat(int(fd), st) }
