package ipcmap

import (
	"errors"
	"fmt"
	"os"

	"github.com/ipckit/ipckit/internal/sentinel"
)

// Errors returned by the map. A bad constructor argument is not one of
// them: its error wraps [os.ErrInvalid] and says which value was wrong. A
// call on a closed handle returns an error wrapping [os.ErrClosed].
var (
	// ErrFull means a write needed an entry or bytes the map does not
	// have (see the package doc, "Capacity"); nothing was changed.
	ErrFull = errors.New("ipcmap: map full")
	// ErrTooLarge means a key and value are larger than the whole of the
	// map's bytes: no write of them can ever succeed.
	ErrTooLarge = errors.New("ipcmap: entry larger than the map")
	// ErrOwnerDead, returned by a write together with its results, means
	// that a writer had died inside a write, and this one repaired the map
	// (the dead writer's write is whole or absent) before doing its own.
	// It is the same value in every ipckit package.
	ErrOwnerDead = sentinel.ErrOwnerDead
	// ErrCorrupt means the map's shared memory holds something impossible
	// (an offset, a length, a count), corrupted or hostile, or a [Typed]
	// value does not decode. It is the same value in every ipckit package.
	ErrCorrupt = sentinel.ErrCorrupt
)

// errClosed is what a call on a closed handle returns.
var errClosed = fmt.Errorf("ipcmap: handle closed: %w", os.ErrClosed)

var errInvalid = os.ErrInvalid
