package ipcpipe

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/ipckit/ipckit/internal/codec"
)

// Typed is an end of a pipe that sends and receives values of type T:
// Python's Connection.send and recv, where Conn's Send and Recv are
// send_bytes and recv_bytes. Its codec is ipcqueue.Typed's (see
// internal/codec): a pointer-free T travels as its bytes, with no
// allocation; any other T as a gob stream; a nil pointer or interface
// arrives as nil; a concrete type sent in an interface must be registered
// with gob.Register in both processes.
//
// A Typed is safe for concurrent use, like its Conn, and travels to a
// spawn child in an argument as its Conn does. The zero Typed is not
// usable: get one from [NewTyped] or by gob-decoding a handle. A Typed may
// be copied; the copies share the Conn.
type Typed[T any] struct {
	c     *Conn
	fixed bool
	cd    codec.Codec[T]
}

// NewTyped returns a typed view of the end c. It fails with [ErrTooLarge]
// if T is fixed-size and larger than the pipe's maximum message.
func NewTyped[T any](c *Conn) (*Typed[T], error) {
	t := &Typed[T]{c: c}
	if err := t.init(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Typed[T]) init() error {
	t.cd = codec.For[T]("ipcpipe")
	t.fixed = t.cd.Fixed()
	if t.fixed && t.cd.Size() > t.c.MaxMsg() {
		return fmt.Errorf("%w: %v takes %d bytes, the pipe's maximum message is %d", ErrTooLarge, reflect.TypeFor[T](), t.cd.Size(), t.c.MaxMsg())
	}
	return nil
}

// Conn returns the end's byte connection.
func (t *Typed[T]) Conn() *Conn { return t.c }

// Send sends v; see [Conn.Send]. A gob-encoded value longer than the
// maximum message is [ErrTooLarge].
func (t *Typed[T]) Send(ctx context.Context, v T) error {
	if t.fixed {
		return t.c.Send(ctx, codec.Bytes(&v))
	}
	b, err := t.cd.EncodeGob(v)
	if err != nil {
		return err
	}
	return t.c.Send(ctx, b)
}

// Recv returns the next value; see [Conn.Recv]. A message that does not
// decode as a T is [ErrCorrupt], and is consumed.
func (t *Typed[T]) Recv(ctx context.Context) (T, error) {
	var v T
	if !t.fixed {
		b, err := t.c.Recv(ctx)
		if err != nil {
			return v, err
		}
		return t.cd.DecodeGob(b)
	}
	n, _, err := t.c.recv(ctx, codec.Bytes(&v), nil, true, true, true)
	if err == nil {
		err = t.cd.CheckFixed(&v, n)
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// Poll is [Conn.Poll].
func (t *Typed[T]) Poll(timeout time.Duration) (bool, error) { return t.c.Poll(timeout) }

// PollContext is [Conn.PollContext].
func (t *Typed[T]) PollContext(ctx context.Context) (bool, error) { return t.c.PollContext(ctx) }

// Close closes the end; see [Conn.Close].
func (t *Typed[T]) Close() error { return t.c.Close() }

// GobEncode encodes a handle to the end; see [Conn.GobEncode].
func (t *Typed[T]) GobEncode() ([]byte, error) { return t.c.GobEncode() }

// GobDecode attaches t, which must be new, to the end a handle names.
func (t *Typed[T]) GobDecode(b []byte) error {
	c := new(Conn)
	if err := c.GobDecode(b); err != nil {
		return err
	}
	t.c = c
	if err := t.init(); err != nil {
		c.close(false) // the end stays open for a handle that can use it
		return err
	}
	return nil
}
