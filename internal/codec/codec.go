// Package codec turns Go values into messages and back, the one way
// ipckit's typed channels do it: ipcqueue.Typed and ipcpipe.Typed.
//
// The codec is chosen once, from T:
//
//   - If T holds no pointers (numbers, bools, arrays and structs of them:
//     no strings, slices, maps, interfaces, channels, funcs or pointers),
//     a message is T's memory, byte for byte (unsafe.Sizeof(T) bytes): no
//     encoding, no allocation ([Codec.Fixed]). Every process must use the
//     same T, built by the same compiler for the same architecture. A
//     message of another length, or with a byte other than 0 or 1 where T
//     has a bool (Go assumes a bool's byte is one of those), is
//     sentinel.ErrCorrupt. A T with more than maxBools bools uses gob
//     instead.
//   - Otherwise a message is one self-contained encoding/gob stream holding
//     the value (type description included, so any consumer can decode any
//     message), which allocates and costs microseconds. A nil pointer or
//     nil interface (Python's None) is the empty message, which no gob
//     stream is, and decodes as nil again. A value of a type that gob cannot
//     send behind an interface because it was never registered fails with
//     an error that says to call gob.Register.
package codec

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"reflect"
	"strings"
	"unsafe"

	"github.com/ipckit/ipckit/internal/sentinel"
)

// Codec is the codec of T. The zero Codec is not usable: get one from
// [For]. A Codec is read-only after For: safe for concurrent use, and it may
// be copied.
type Codec[T any] struct {
	pkg   string // the caller's package, for error messages ("ipcqueue")
	fixed bool
	size  int
	bools []uintptr // offsets of T's bools (fixed codec), checked on decode
	nilOK bool      // T is a pointer or interface type: nil is the empty message
}

// maxBools bounds the bools a fixed-size T may hold (each is checked on
// every decode).
const maxBools = 64

// For returns the codec of T; pkg prefixes its error messages.
func For[T any](pkg string) Codec[T] {
	typ := reflect.TypeFor[T]()
	c := Codec[T]{pkg: pkg, fixed: pointerFree(typ), size: int(typ.Size())}
	if c.fixed {
		var ok bool
		c.bools, ok = boolOffsets(typ, 0, nil)
		c.fixed = ok
	}
	k := typ.Kind()
	c.nilOK = k == reflect.Pointer || k == reflect.Interface
	return c
}

// Fixed reports whether T uses the fixed-size (memory copy) codec.
func (c *Codec[T]) Fixed() bool { return c.fixed }

// Size is unsafe.Sizeof(T): the length of a fixed-size message.
func (c *Codec[T]) Size() int { return c.size }

// pointerFree reports whether values of typ can be copied as bytes.
func pointerFree(typ reflect.Type) bool {
	switch typ.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return pointerFree(typ.Elem())
	case reflect.Struct:
		for i := range typ.NumField() {
			if !pointerFree(typ.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

// boolOffsets appends to offs the offsets (from base) of typ's bools; ok
// is false if there are more than maxBools.
func boolOffsets(typ reflect.Type, base uintptr, offs []uintptr) ([]uintptr, bool) {
	switch typ.Kind() {
	case reflect.Bool:
		offs = append(offs, base)
	case reflect.Array:
		for i := range typ.Len() {
			var ok bool
			if offs, ok = boolOffsets(typ.Elem(), base+uintptr(i)*typ.Elem().Size(), offs); !ok {
				return nil, false
			}
		}
	case reflect.Struct:
		for i := range typ.NumField() {
			f := typ.Field(i)
			var ok bool
			if offs, ok = boolOffsets(f.Type, base+f.Offset, offs); !ok {
				return nil, false
			}
		}
	}
	return offs, len(offs) <= maxBools
}

// Bytes returns the memory of *p as bytes: the message of a fixed-size T,
// valid as long as *p is. For a T that is not fixed-size it must not be
// called.
func Bytes[T any](p *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p))
}

// CheckFixed returns an error wrapping sentinel.ErrCorrupt unless the
// n-byte message now in *v (copied into its memory) is a valid T.
func (c *Codec[T]) CheckFixed(v *T, n int) error {
	if n != c.size {
		return fmt.Errorf("%s: %d-byte message for a %d-byte %v: %w", c.pkg, n, c.size, reflect.TypeFor[T](), sentinel.ErrCorrupt)
	}
	if len(c.bools) > 0 {
		b := Bytes(v)
		for _, off := range c.bools {
			if b[off] > 1 {
				return fmt.Errorf("%s: byte %d at the offset of a bool of %v: %w", c.pkg, b[off], reflect.TypeFor[T](), sentinel.ErrCorrupt)
			}
		}
	}
	return nil
}

// The fixed-size paths never hand a value's address to gob (in a separate
// function), so escape analysis keeps them allocation-free: EncodeGob and
// DecodeGob take and return values.

// EncodeGob returns the gob message of v (the empty message for a nil
// pointer or interface).
func (c *Codec[T]) EncodeGob(v T) ([]byte, error) {
	if c.nilOK && isNil(&v) {
		return []byte{}, nil
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&v); err != nil {
		return nil, fmt.Errorf("%s: encode %v: %w%s", c.pkg, reflect.TypeFor[T](), err, registerHint(err))
	}
	return buf.Bytes(), nil
}

// DecodeGob decodes the gob message b; one that does not decode as a T is
// an error wrapping sentinel.ErrCorrupt.
func (c *Codec[T]) DecodeGob(b []byte) (T, error) {
	var v T
	if len(b) == 0 && c.nilOK {
		return v, nil
	}
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&v); err != nil {
		return v, fmt.Errorf("%s: decode %v: %v%s: %w", c.pkg, reflect.TypeFor[T](), err, registerHint(err), sentinel.ErrCorrupt)
	}
	return v, nil
}

// isNil reports whether *p, a pointer or an interface, is nil.
func isNil[T any](p *T) bool {
	return reflect.ValueOf(p).Elem().IsNil()
}

// registerHint is what to add to gob's error when the cause is a type sent
// behind an interface without gob.Register (gob says "type not registered
// for interface" when encoding, "name not registered for interface" when
// decoding).
func registerHint(err error) string {
	if !strings.Contains(err.Error(), "not registered for interface") {
		return ""
	}
	return " (a concrete type sent in an interface must be registered in every process that sends or receives it: call gob.Register with a value of it, in an init function)"
}
