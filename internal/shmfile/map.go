package shmfile

import (
	"os"

	"github.com/edsrzf/mmap-go"
)

// Mapping
//
// Every mapping of shared memory in ipckit is made and ended here, so that
// there is one way to do it: shm's segments and semaphore's FileMutex
// record both use [Map] and [Unmap], which go through
// github.com/edsrzf/mmap-go, the project's mapping library. [Retire]
// (shmfile_linux.go) is the one operation that library cannot express: it
// must map PROT_NONE anonymous memory at the very addresses of an existing
// mapping (MAP_FIXED), and mmap-go only maps at an address the kernel
// chooses. Retire therefore issues that one mmap call itself.

// Map maps the first size bytes of f, shared, readable and writable. The
// mapping outlives f's descriptor; it lasts until [Unmap] or [Retire].
func Map(f *os.File, size int) ([]byte, error) {
	b, err := mmap.MapRegion(f, size, mmap.RDWR, 0, 0)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return b, nil
}

// Unmap ends a mapping made by [Map]; b must be the very slice Map
// returned. Its addresses are free afterwards, and the kernel may map
// something else there: use [Retire] instead when a stale reference to b
// might still be used.
func Unmap(b []byte) error {
	m := mmap.MMap(b)
	if err := m.Unmap(); err != nil {
		return os.NewSyscallError("munmap", err)
	}
	return nil
}
