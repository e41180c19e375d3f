package ipcqueue

import (
	"context"
	"fmt"
	"reflect"

	"github.com/ipckit/ipckit/internal/codec"
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
//     A T with more than 64 bools uses gob instead.
//   - Otherwise a message is one self-contained encoding/gob stream holding
//     the value (type description included, so any consumer can decode any
//     message), which allocates and costs microseconds. A concrete type
//     sent in an interface (Typed[any]) must be registered with
//     gob.Register in every process; the error says so when it is not.
//
// A nil pointer or nil interface value (Python's None) arrives as nil: it
// travels as an empty message, which no gob stream is. So a port of
// Python's None poison pill works as it is, though the way to tell
// consumers that no more values will come is [Typed.Shutdown]: they drain
// what is left, then Get returns [io.EOF].
//
// A Typed is safe for concurrent use, like its Queue, and implements
// gob.GobEncoder and gob.GobDecoder like it. The zero Typed is not usable
// (its methods panic): get one from [NewTyped], [NewTypedQueue] or by
// gob-decoding a handle. A Typed may be copied; the copies share the
// Queue, and [Typed.Close] closes it for all of them. Values are copied in
// and out: Put keeps nothing of v, and Get returns a value the caller owns
// (for a gob-encoded T, new memory).
type Typed[T any] struct {
	q     *Queue
	fixed bool // c.Fixed(), on the hot path
	c     codec.Codec[T]
}

// DefaultTypedSize is the ring size of a queue made by [NewTypedQueue]
// with size 0: 1 MiB.
const DefaultTypedSize = 1 << 20

// NewTypedQueue makes a typed queue in one call: a [Typed] on a new
// anonymous queue ([New]) of size bytes, or [DefaultTypedSize] if size is
// 0. The queue is bounded, unlike Python's Queue(): Put waits while it is
// full (see the package doc, "Capacity"). Close the Typed to release it.
func NewTypedQueue[T any](size int, opts *Options) (*Typed[T], error) {
	if size == 0 {
		size = DefaultTypedSize
	}
	q, err := New(size, opts)
	if err != nil {
		return nil, err
	}
	t, err := NewTyped[T](q)
	if err != nil {
		q.Close()
		return nil, err
	}
	return t, nil
}

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
	t.c = codec.For[T]("ipcqueue")
	t.fixed = t.c.Fixed()
	if t.fixed && t.c.Size() > t.q.MaxMsg() {
		return fmt.Errorf("%w: %v takes %d bytes, the queue's maximum message is %d", ErrTooLarge, reflect.TypeFor[T](), t.c.Size(), t.q.MaxMsg())
	}
	return nil
}

// checkFixed returns ErrCorrupt unless a message of n bytes now in v is a
// valid T.
func (t *Typed[T]) checkFixed(v *T, n int) error { return t.c.CheckFixed(v, n) }

// Queue returns the underlying byte queue.
func (t *Typed[T]) Queue() *Queue { return t.q }

// Fixed reports whether T uses the fixed-size (memory copy) codec.
func (t *Typed[T]) Fixed() bool { return t.fixed }

func (t *Typed[T]) encodeGob(v T) ([]byte, error) { return t.c.EncodeGob(v) }

func (t *Typed[T]) decodeGob(b []byte) (T, error) { return t.c.DecodeGob(b) }

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
