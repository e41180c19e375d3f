package ipcpipe

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"os"
	"reflect"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/shm"
)

// The handle types of this package, for internal/handoff: spawn passes the
// file of a pipe's segment to a child that gets an end in its argument.
// Typed[T] is claimed for every T at once, as ipcqueue's Typed is.
func init() {
	pkg := reflect.TypeFor[Conn]().PkgPath()
	typed := reflect.TypeFor[interface{ Conn() *Conn }]()
	handoff.Register(
		handoff.For(func(c *Conn) []*os.File { return handoff.Files(c.Segment()) }),
		func(t reflect.Type) func(any) []*os.File {
			if t.Kind() != reflect.Struct || t.PkgPath() != pkg || !reflect.PointerTo(t).Implements(typed) {
				return nil
			}
			return func(p any) []*os.File { return handoff.Files(p.(interface{ Conn() *Conn }).Conn()) }
		},
	)
}

// wireConn is an end's handle: its segment's (a name, or an inherited
// descriptor inside spawn) and which end.
type wireConn struct {
	Seg *shm.Segment
	End int
}

// GobEncode encodes a handle to this end (never the messages in it), to
// hand the end to another process: an anonymous pipe's end only in the
// argument of a child started by spawn, a named pipe's anywhere. From then
// on the end is on its way: [Conn.Close] here only releases the handle, and
// once the receiving process attaches it, this handle's calls fail with
// [ErrMoved]. A heap pipe cannot travel ([shm.ErrHeap]).
func (c *Conn) GobEncode() ([]byte, error) {
	if !c.open.Load() {
		return nil, errClosed
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(wireConn{Seg: c.m.seg, End: c.end}); err != nil {
		return nil, fmt.Errorf("ipcpipe: encode handle: %w", err)
	}
	self := uint64(c.self)
	if !c.owner.CompareAndSwap(self, self|transitBit) && c.owner.Load() != self|transitBit {
		return nil, fmt.Errorf("ipcpipe: encode handle: %w", ErrMoved)
	}
	return buf.Bytes(), nil
}

// GobDecode attaches c, which must be new, to the end a handle names, and
// takes the end over for this process.
func (c *Conn) GobDecode(b []byte) error {
	var w wireConn
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&w); err != nil {
		return fmt.Errorf("ipcpipe: decode handle: %w", err)
	}
	if w.Seg == nil {
		return fmt.Errorf("ipcpipe: decode handle: no segment: %w", ErrCorrupt)
	}
	if k := w.Seg.Kind(); k != shm.KindPipe {
		w.Seg.Close()
		return fmt.Errorf("ipcpipe: decode handle: segment holds %v, not a pipe: %w", k, shm.ErrKind)
	}
	if w.End != 0 && w.End != 1 {
		w.Seg.Close()
		return fmt.Errorf("ipcpipe: decode handle: end %d: %w", w.End, ErrCorrupt)
	}
	if err := adopt(c, w.Seg, w.End); err != nil {
		return fmt.Errorf("ipcpipe: decode handle: %w", err)
	}
	return nil
}
