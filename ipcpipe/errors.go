package ipcpipe

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ipckit/ipckit/internal/sentinel"
)

// Errors of the package; see the package doc for the standard ones it
// returns (io.EOF, io.ErrClosedPipe, os.ErrClosed, os.ErrInvalid).
var (
	// ErrTooLarge means a message is longer than the pipe's maximum
	// message ([Conn.MaxMsg]); nothing was sent.
	ErrTooLarge = errors.New("ipcpipe: message larger than the maximum message size")
	// ErrOneWay means a call that the end of a one-way pipe cannot make:
	// a send on the first end, a receive on the second.
	ErrOneWay = errors.New("ipcpipe: this end of a one-way pipe cannot do that")
	// ErrMoved means this process handed the end to another process (a
	// spawn child, or an Open of a named pipe's end), which now owns it.
	ErrMoved = errors.New("ipcpipe: the end belongs to another process now")
	// ErrPeerDied means the process holding the other end died without
	// closing it. Errors that match it also match io.EOF (a receive) or
	// io.ErrClosedPipe (a send).
	ErrPeerDied = errors.New("ipcpipe: the process at the other end died")
	// ErrCorrupt means the pipe's shared memory is impossible (corrupted
	// or hostile). It is the same value in every ipckit package.
	ErrCorrupt = sentinel.ErrCorrupt
)

var errClosed = fmt.Errorf("ipcpipe: handle closed: %w", os.ErrClosed)

// peerDied is the error of a receive (eof) or a send after the peer, pid,
// died.
func peerDied(pid uint32, eof bool) error {
	base := io.ErrClosedPipe
	if eof {
		base = io.EOF
	}
	return fmt.Errorf("%w (pid %d): %w", ErrPeerDied, pid, base)
}
