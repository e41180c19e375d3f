package ipcqueue

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"reflect"
)

// Typed is a queue of values of type T on top of a [Queue].
//
// The codec is chosen once, from T:
//
//   - If T holds no pointers (numbers, bools, arrays and structs of them:
//     no strings, slices, maps, interfaces, channels, funcs or pointers),
//     a message is T's memory, byte for byte (unsafe.Sizeof(T) bytes): no
//     encoding, no allocation. Every process must use the same T, built by
//     the same compiler for the same architecture. A message of another
//     length, or with a byte other than 0 or 1 where T has a bool (Go
//     assumes a bool's byte is one of those), is [ErrCorrupt] and consumed.
//     A T with more than maxBools bools uses gob instead.
//   - Otherwise a message is one self-contained encoding/gob stream holding
//     the value (type description included, so any consumer can decode any
//     message), which allocates and costs microseconds.
//
// A Typed is safe for concurrent use, like its Queue, and implements
// gob.GobEncoder and gob.GobDecoder like it. The zero Typed is not usable
// (its methods panic): get one from [NewTyped] or by gob-decoding a handle.
// A Typed may be copied; the copies share the Queue, and [Typed.Close]
// closes it for all of them. Values are copied in and out: Put keeps
// nothing of v, and Get returns a value the caller owns (for a gob-encoded
// T, new memory).
type Typed[T any] struct {
	q     *Queue
	fixed bool
	size  int
	bools []uintptr // offsets of T's bools (fixed codec), checked on Get
}

// maxBools bounds the bools a fixed-size T may hold (each is checked on
// every Get).
const maxBools = 64

// NewTyped returns a typed view of q. It fails with [ErrTooLarge] if T is
// fixed-size and larger than q's maximum message, since no value would
// fit. (A gob-encoded value that does not fit is refused by Put, with
// ErrTooLarge too.)
func NewTyped[T any](q *Queue) (*Typed[T], error) {
	t := &Typed[T]{q: q}
	if err := t.init(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Typed[T]) init() error {
	typ := reflect.TypeFor[T]()
	t.fixed = pointerFree(typ)
	t.size = int(typ.Size())
	if t.fixed {
		var ok bool
		t.bools, ok = boolOffsets(typ, 0, nil)
		t.fixed = ok
	}
	if t.fixed && t.size > t.q.MaxMsg() {
		return fmt.Errorf("%w: %v takes %d bytes, the queue's maximum message is %d", ErrTooLarge, typ, t.size, t.q.MaxMsg())
	}
	return nil
}

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

// checkFixed returns ErrCorrupt unless a message of n bytes now in v is a
// valid T.
func (t *Typed[T]) checkFixed(v *T, n int) error {
	if n != t.size {
		return t.sizeErr(n)
	}
	if len(t.bools) > 0 {
		b := bytesOf(v)
		for _, off := range t.bools {
			if b[off] > 1 {
				return fmt.Errorf("ipcqueue: byte %d at the offset of a bool of %v: %w", b[off], reflect.TypeFor[T](), ErrCorrupt)
			}
		}
	}
	return nil
}

// Queue returns the underlying byte queue.
func (t *Typed[T]) Queue() *Queue { return t.q }

// Fixed reports whether T uses the fixed-size (memory copy) codec.
func (t *Typed[T]) Fixed() bool { return t.fixed }

// The fixed-size paths below never hand a value's address to gob (in a
// separate function), so escape analysis keeps them allocation-free.

func (t *Typed[T]) encodeGob(v T) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&v); err != nil {
		return nil, fmt.Errorf("ipcqueue: encode %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

func (t *Typed[T]) decodeGob(b []byte) (T, error) {
	var v T
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&v); err != nil {
		return v, fmt.Errorf("ipcqueue: decode %T: %v: %w", v, err, ErrCorrupt)
	}
	return v, nil
}

func (t *Typed[T]) sizeErr(n int) error {
	return fmt.Errorf("ipcqueue: %d-byte message for a %d-byte %v: %w", n, t.size, reflect.TypeFor[T](), ErrCorrupt)
}

// Put appends v; see [Queue.Put].
func (t *Typed[T]) Put(ctx context.Context, v T) error {
	if t.fixed {
		return t.q.Put(ctx, bytesOf(&v))
	}
	b, err := t.encodeGob(v)
	if err != nil {
		return err
	}
	return t.q.Put(ctx, b)
}

// TryPut appends v if there is room now; see [Queue.TryPut].
func (t *Typed[T]) TryPut(v T) (bool, error) {
	if t.fixed {
		return t.q.TryPut(bytesOf(&v))
	}
	b, err := t.encodeGob(v)
	if err != nil {
		return false, err
	}
	return t.q.TryPut(b)
}

// Get removes and returns the oldest value; see [Queue.Get]. A message
// that does not decode as a T is [ErrCorrupt] (and is consumed).
func (t *Typed[T]) Get(ctx context.Context) (T, error) {
	if !t.fixed {
		b, err := t.q.Get(ctx)
		if err != nil {
			var zero T
			return zero, err
		}
		return t.decodeGob(b)
	}
	var v T
	n, _, err := t.q.get(ctx, bytesOf(&v), nil, true, true)
	if err == nil {
		err = t.checkFixed(&v, n)
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// TryGet returns the oldest value if there is one now; see [Queue.TryGet].
func (t *Typed[T]) TryGet() (T, bool, error) {
	var v T
	if !t.fixed {
		b, ok, err := t.q.TryGet()
		if err != nil || !ok {
			return v, ok, err
		}
		v, err = t.decodeGob(b)
		return v, true, err
	}
	n, ok, err := t.q.get(context.Background(), bytesOf(&v), nil, false, true)
	if err == nil && ok {
		err = t.checkFixed(&v, n)
	}
	if err != nil || !ok {
		var zero T
		return zero, false, err
	}
	return v, true, nil
}

// Shutdown ends the queue for everyone; see [Queue.Shutdown].
func (t *Typed[T]) Shutdown() error { return t.q.Shutdown() }

// Close releases this handle; see [Queue.Close].
func (t *Typed[T]) Close() error { return t.q.Close() }

// GobEncode encodes a handle to the queue; see [Queue.GobEncode].
func (t *Typed[T]) GobEncode() ([]byte, error) { return t.q.GobEncode() }

// GobDecode attaches t, which must be new, to the queue a handle names.
func (t *Typed[T]) GobDecode(b []byte) error {
	q := new(Queue)
	if err := q.GobDecode(b); err != nil {
		return err
	}
	t.q = q
	if err := t.init(); err != nil {
		q.Close()
		return err
	}
	return nil
}
