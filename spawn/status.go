package spawn

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Status protocol
//
// The child reports how its function ended on a pipe (descriptor 3+n+1, see
// child.go) just before it exits:
//
//	kind  byte     statusError, statusPanic, statusUnregistered, ...
//	len   uvarint  then len bytes of message (error text or panic value)
//	len   uvarint  then len bytes of stack (panics only; may be 0)
//
// Success sends nothing: exit code 0 and an empty status mean nil. Anything
// that kills the child before it writes (a signal, os.Exit in user code)
// leaves the status empty, and the parent reports the exit state instead.
// The child truncates each field to maxField, so the whole report is bounded
// and the parent reads it with a limit; a report the parent cannot parse is
// ErrStatus, never a panic.

const (
	statusError byte = 1 + iota
	statusPanic
	statusUnregistered
	statusMismatch
	statusArgument
)

const (
	maxField  = 256 << 10
	maxStatus = 2*maxField + 32
)

// Exit codes of a child that reports a status; the status, not the code, is
// what the parent looks at.
const (
	exitError = 1
	exitPanic = 2
	exitSetup = 3
	// exitBySIGTERM is no exit code: the child ends by SIGTERM (see
	// Process.Terminate).
	exitBySIGTERM = -1
)

type status struct {
	kind       byte
	msg, stack string
}

// truncate cuts s to at most maxField bytes, at a rune boundary.
func truncate(s string) string {
	if len(s) <= maxField {
		return s
	}
	cut := maxField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func (s status) marshal() []byte {
	msg, stack := truncate(s.msg), truncate(s.stack)
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(msg)+len(stack))
	b = append(b, s.kind)
	b = binary.AppendUvarint(b, uint64(len(msg)))
	b = append(b, msg...)
	b = binary.AppendUvarint(b, uint64(len(stack)))
	return append(b, stack...)
}

// parseStatus decodes a report; ok is false when b is empty (no report).
func parseStatus(b []byte) (s status, ok bool, err error) {
	if len(b) == 0 {
		return status{}, false, nil
	}
	s.kind, b = b[0], b[1:]
	if s.kind < statusError || s.kind > statusArgument {
		return status{}, false, fmt.Errorf("%w: kind %d", ErrStatus, s.kind)
	}
	field := func() (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", fmt.Errorf("%w: bad field length", ErrStatus)
		}
		f := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return f, nil
	}
	if s.msg, err = field(); err != nil {
		return status{}, false, err
	}
	if s.stack, err = field(); err != nil {
		return status{}, false, err
	}
	if len(b) != 0 {
		return status{}, false, fmt.Errorf("%w: %d trailing bytes", ErrStatus, len(b))
	}
	return s, true, nil
}
