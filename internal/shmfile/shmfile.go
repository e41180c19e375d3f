// Package shmfile opens and creates the files behind shared-memory segments:
// named files in /dev/shm and anonymous memfds, with the checks and flags
// the design asks for, and maps them into memory. It holds all of ipckit's
// file-level system calls and every mapping of shared memory (map.go).
package shmfile

import (
	"errors"
	"os"
)

// Dir is where named segments live.
const Dir = "/dev/shm"

// Errors returned, inside an [os.PathError] that names the file, when an
// existing name is unfit to open. They carry no package prefix: they read
// after the path, as an errno's text does ("open /dev/shm/x: is a symbolic
// link"), and the caller adds its own prefix once.
var (
	ErrSymlink    = errors.New("is a symbolic link")
	ErrNotRegular = errors.New("is not a regular file")
	ErrOwner      = errors.New("is owned by another user")
)

// Path returns the file that backs the named segment name.
func Path(name string) string { return Dir + "/" + name }

func pathErr(op, path string, err error) error {
	return &os.PathError{Op: op, Path: path, Err: err}
}
