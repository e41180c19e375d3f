// Package handoff carries open files from a parent process to the child that
// spawn starts, so that anonymous segments (memfds) arrive in the child
// attached to the same memory.
//
// In the parent, spawn encodes the child's argument inside [Collect]; every
// anonymous object met on the way calls [Add] with its file and records the
// index it gets back. spawn passes the collected files as the child's
// inherited descriptors 3, 4, ... and tells the child how many there are; in
// the child, [File] turns an index back into the file.
package handoff

import (
	"errors"
	"os"
	"sync"
)

// ErrNoTransport is returned by [Add] outside [Collect]: an anonymous object
// can only travel to a child through spawn.
var ErrNoTransport = errors.New("handoff: an anonymous shared object can only be passed to a child process started by spawn")

// ErrNoFile is returned by [File] for an index the parent did not pass.
var ErrNoFile = errors.New("handoff: no such inherited descriptor")

// FirstFD is the descriptor number of the first inherited file in a child
// (os/exec's ExtraFiles start after stdin, stdout and stderr).
const FirstFD = 3

var (
	collectMu sync.Mutex // held for the whole of one Collect

	mu        sync.Mutex
	collected []*os.File // the files added inside Collect
	collector uint64     // the goroutine inside Collect, or 0

	inheritMu sync.Mutex
	inherited []*os.File // in a child: the files the parent passed
)

// Collect runs encode and returns the files that [Add] received meanwhile
// from encode's goroutine, in index order. Calls of Collect run one at a
// time; encode must not call Collect (through spawn.Start, say).
func Collect(encode func() error) ([]*os.File, error) {
	collectMu.Lock()
	defer collectMu.Unlock()
	mu.Lock()
	collected, collector = nil, goid()
	mu.Unlock()
	err := encode()
	mu.Lock()
	files := collected
	collected, collector = nil, 0
	mu.Unlock()
	if err != nil {
		return nil, err
	}
	return files, nil
}

// Add registers f to be passed to the child being encoded and returns its
// index. Adding the same file twice returns the same index. Only the
// goroutine inside [Collect] may add: anywhere else, Add fails with
// [ErrNoTransport], even while another goroutine collects.
func Add(f *os.File) (int, error) {
	if f == nil || f.Fd() == ^uintptr(0) {
		return 0, os.ErrClosed
	}
	mu.Lock()
	defer mu.Unlock()
	if collector == 0 || collector != goid() {
		return 0, ErrNoTransport
	}
	for i, g := range collected {
		if g == f {
			return i, nil
		}
	}
	collected = append(collected, f)
	return len(collected) - 1, nil
}

// SetInherited records, in a child, the files its parent passed. spawn calls
// it once at start-up.
func SetInherited(files []*os.File) {
	inheritMu.Lock()
	inherited = files
	inheritMu.Unlock()
}

// File returns the inherited file with index i. The caller must not close it:
// several objects may share it.
func File(i int) (*os.File, error) {
	inheritMu.Lock()
	defer inheritMu.Unlock()
	if i < 0 || i >= len(inherited) {
		return nil, ErrNoFile
	}
	return inherited[i], nil
}
