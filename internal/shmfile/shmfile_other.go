//go:build !linux

package shmfile

import (
	"errors"
	"os"
)

// Create is not supported on this platform.
func Create(path string, size int64, mode os.FileMode) (*os.File, error) {
	return nil, errors.ErrUnsupported
}

// Open is not supported on this platform.
func Open(path string) (*os.File, error) { return nil, errors.ErrUnsupported }

// Remove is not supported on this platform.
func Remove(path string) error { return errors.ErrUnsupported }

// CreateAnonymous is not supported on this platform.
func CreateAnonymous(name string, size int64) (*os.File, error) {
	return nil, errors.ErrUnsupported
}

// Size is not supported on this platform.
func Size(f *os.File) (size, allocated int64, err error) { return 0, 0, errors.ErrUnsupported }

// Publish is not supported on this platform.
func Publish(f *os.File, path string) error { return errors.ErrUnsupported }

// Retire is not supported on this platform.
func Retire(b []byte) error { return errors.ErrUnsupported }

// Regular is not supported on this platform.
func Regular(f *os.File) bool { return false }

// Inherit is not supported on this platform.
func Inherit(fd int, name string) (*os.File, error) { return nil, errors.ErrUnsupported }

// Dup is not supported on this platform.
func Dup(f *os.File) (*os.File, error) { return nil, errors.ErrUnsupported }
