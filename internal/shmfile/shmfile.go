// Package shmfile opens and creates the files behind shared-memory segments:
// named files in /dev/shm and anonymous memfds, with the checks and flags
// the design asks for. It holds all of ipckit's file-level system calls.
package shmfile

import (
	"errors"
	"os"
)

// Dir is where named segments live.
const Dir = "/dev/shm"

// Errors returned when an existing name is unfit to open.
var (
	ErrSymlink    = errors.New("shm: is a symbolic link")
	ErrNotRegular = errors.New("shm: is not a regular file")
	ErrOwner      = errors.New("shm: is owned by another user")
)

// Path returns the file that backs the named segment name.
func Path(name string) string { return Dir + "/" + name }

func pathErr(op, path string, err error) error {
	return &os.PathError{Op: op, Path: path, Err: err}
}
