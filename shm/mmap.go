package shm

import (
	"os"

	"github.com/edsrzf/mmap-go"
)

// mapFile maps the first size bytes of f, shared and writable.
func mapFile(f *os.File, size int) ([]byte, error) {
	return mmap.MapRegion(f, size, mmap.RDWR, 0, 0)
}

func unmap(b []byte) error {
	m := mmap.MMap(b)
	return m.Unmap()
}
