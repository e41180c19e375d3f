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
//	len   uvarint  then len bytes of keys: the keys of the registered
//	               errors the error matched (errreg.go), each as uvarint
//	               length and bytes
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
	maxStatus = 3*maxField + 48
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
	keys       string // packKeys of the error's registered keys
}

// packKeys packs keys into one field, whole keys only, at most maxField
// bytes.
func packKeys(keys []string) string {
	var b []byte
	for _, k := range keys {
		if len(b)+binary.MaxVarintLen64+len(k) > maxField {
			break
		}
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return string(b)
}

// unpackKeys unpacks a packKeys field; a malformed tail is dropped.
func unpackKeys(s string) []string {
	var keys []string
	b := []byte(s)
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			break
		}
		keys = append(keys, string(b[k:k+int(n)]))
		b = b[k+int(n):]
	}
	return keys
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
	msg, stack, keys := truncate(s.msg), truncate(s.stack), s.keys
	if len(keys) > maxField {
		keys = "" // packKeys makes none this long
	}
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(msg)+len(stack)+len(keys))
	b = append(b, s.kind)
	b = binary.AppendUvarint(b, uint64(len(msg)))
	b = append(b, msg...)
	b = binary.AppendUvarint(b, uint64(len(stack)))
	b = append(b, stack...)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	return append(b, keys...)
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
	if s.keys, err = field(); err != nil {
		return status{}, false, err
	}
	if len(b) != 0 {
		return status{}, false, fmt.Errorf("%w: %d trailing bytes", ErrStatus, len(b))
	}
	return s, true, nil
}
