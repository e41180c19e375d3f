//go:build !linux

package shmfile

import (
	"errors"
	"os"
	"time"
)

// Stat is what fstat says of an open file.
type Stat struct {
	Dev, Ino uint64
	Size     int64
	Blocks   int64
	Mode     os.FileMode
	UID, GID uint32
	Created  time.Time
}

// OpenReadOnly is not supported on this platform.
func OpenReadOnly(path string, follow bool) (*os.File, Stat, error) {
	return nil, Stat{}, errors.ErrUnsupported
}

// MapReadOnly is not supported on this platform.
func MapReadOnly(f *os.File, size int) ([]byte, error) { return nil, errors.ErrUnsupported }
