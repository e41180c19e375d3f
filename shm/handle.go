package shm

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"os"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/internal/shmfile"
)

// Handles
//
// Segments and the values in them implement gob.GobEncoder and
// gob.GobDecoder, so an argument that holds them can be encoded in a parent
// and decoded in a child. The encoding is a small handle, never the memory:
// a named segment travels as its name; an anonymous one as the identifier
// (the parent's descriptor number) of the file that spawn passes to the
// child, so it travels only inside spawn (internal/handoff). The init
// below tells internal/handoff which of this package's types are handles
// and which file each passes, so that spawn finds them in its argument.
// The decoded object is attached to the same memory and owns its own
// mapping, which its Close releases.

func init() {
	handoff.Register(
		handoff.For(func(s *Segment) []*os.File { return s.handoffFiles() }),
		handoff.For(func(c *Catalog) []*os.File { return c.Segment().handoffFiles() }),
		handoff.For(func(v *Int32) []*os.File { return v.Segment().handoffFiles() }),
		handoff.For(func(v *Int64) []*os.File { return v.Segment().handoffFiles() }),
		handoff.For(func(v *Uint64) []*os.File { return v.Segment().handoffFiles() }),
		handoff.For(func(v *Float64) []*os.File { return v.Segment().handoffFiles() }),
		handoff.For(func(a *Array[int32]) []*os.File { return a.Segment().handoffFiles() }),
		handoff.For(func(a *Array[int64]) []*os.File { return a.Segment().handoffFiles() }),
		handoff.For(func(a *Array[uint64]) []*os.File { return a.Segment().handoffFiles() }),
		handoff.For(func(a *Array[float64]) []*os.File { return a.Segment().handoffFiles() }),
	)
}

// handoffFiles returns the file that s's handle passes to a child: an open
// anonymous segment's; none for a named one (it travels by name), a heap
// one or a closed one (their encoding fails).
func (s *Segment) handoffFiles() []*os.File {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.file == nil || s.name != "" {
		return nil
	}
	return []*os.File{s.file}
}

type wireSegment struct {
	Name string // named segments
	FD   int    // anonymous segments: the parent's descriptor number + 1 (handoff.ID)
	Kind Kind   // the segment's kind, checked again on the other side
}

type wireRef struct {
	Seg    wireSegment
	Off, N int
	Type   Kind // the value's own kind, so it decodes only into its own type
}

func (s *Segment) wire() (wireSegment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return wireSegment{}, fmt.Errorf("shm: encode a handle: %w", os.ErrClosed)
	case s.file == nil:
		return wireSegment{}, ErrHeap
	case s.name != "":
		return wireSegment{Name: s.name, Kind: s.kind}, nil
	}
	fd, err := handoff.ID(s.file)
	if err != nil {
		return wireSegment{}, fmt.Errorf("shm: encode a handle to an anonymous segment: %w", err)
	}
	return wireSegment{FD: fd + 1, Kind: s.kind}, nil
}

func (w wireSegment) open() (*Segment, error) {
	if !w.Kind.valid() {
		return nil, fmt.Errorf("%w: handle names kind %d", ErrKind, uint16(w.Kind))
	}
	if w.Name != "" {
		return w.Kind.Open(w.Name)
	}
	f, err := handoff.File(w.FD - 1)
	if err != nil {
		return nil, fmt.Errorf("shm: decode a handle to the parent's descriptor %d: %w", w.FD-1, err)
	}
	if !shmfile.Regular(f) {
		return nil, fmt.Errorf("shm: the descriptor inherited for the parent's %d is not a segment", w.FD-1)
	}
	if f, err = shmfile.Dup(f); err != nil {
		return nil, fmt.Errorf("shm: %w", err)
	}
	s, err := openFile(f, w.Kind)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("shm: inherited segment: %w", err)
	}
	return s, nil
}

func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(v)
	return buf.Bytes(), err
}

func decode(b []byte, v any) error { return gob.NewDecoder(bytes.NewReader(b)).Decode(v) }

// GobEncode encodes a handle to the segment; see the package doc.
func (s *Segment) GobEncode() ([]byte, error) {
	w, err := s.wire()
	if err != nil {
		return nil, err
	}
	return encode(w)
}

// GobDecode attaches s, which must be new, to the segment a handle names.
func (s *Segment) GobDecode(b []byte) error {
	var w wireSegment
	if err := decode(b, &w); err != nil {
		return err
	}
	o, err := w.open()
	if err != nil {
		return err
	}
	s.name, s.file, s.mem, s.kind = o.name, o.file, o.mem, o.kind
	return nil
}

// GobEncode encodes a handle to the value; see the package doc.
func (r *ref) GobEncode() ([]byte, error) {
	w, err := r.seg.wire()
	if err != nil {
		return nil, err
	}
	return encode(wireRef{Seg: w, Off: r.off, N: r.n, Type: r.typ})
}

// decodeRef opens the segment a value's handle names and calls place to put
// the value there; r then owns the segment.
func decodeRef(b []byte, r *ref, typ Kind, place func(seg *Segment, off, n int) error) error {
	var w wireRef
	if err := decode(b, &w); err != nil {
		return err
	}
	if w.Type != typ {
		return fmt.Errorf("%w: a handle to a shared %v decoded as a %v", ErrKind, w.Type, typ)
	}
	seg, err := w.Seg.open()
	if err != nil {
		return err
	}
	if err := place(seg, w.Off, w.N); err != nil {
		seg.Close()
		return err
	}
	r.seg, r.off, r.n, r.typ, r.owned = seg, w.Off, w.N, typ, true
	return nil
}

// GobDecode attaches v, which must be new, to the value a handle names.
func (v *Int32) GobDecode(b []byte) error {
	return decodeRef(b, &v.ref, KindInt32, func(seg *Segment, off, _ int) (err error) {
		v.atomicInt32, err = valueAt[atomicInt32](seg, off, 4)
		return err
	})
}

// GobDecode attaches v, which must be new, to the value a handle names.
func (v *Int64) GobDecode(b []byte) error {
	return decodeRef(b, &v.ref, KindInt64, func(seg *Segment, off, _ int) (err error) {
		v.atomicInt64, err = valueAt[atomicInt64](seg, off, 8)
		return err
	})
}

// GobDecode attaches v, which must be new, to the value a handle names.
func (v *Uint64) GobDecode(b []byte) error {
	return decodeRef(b, &v.ref, KindUint64, func(seg *Segment, off, _ int) (err error) {
		v.atomicUint64, err = valueAt[atomicUint64](seg, off, 8)
		return err
	})
}

// GobDecode attaches v, which must be new, to the value a handle names.
func (f *Float64) GobDecode(b []byte) error {
	return decodeRef(b, &f.ref, KindFloat64, func(seg *Segment, off, _ int) (err error) {
		f.bits, err = valueAt[atomicUint64](seg, off, 8)
		return err
	})
}

// GobDecode attaches a, which must be new, to the array a handle names.
func (a *Array[T]) GobDecode(b []byte) error {
	kind, _ := elemKind[T]()
	return decodeRef(b, &a.ref, kind, func(seg *Segment, off, n int) error {
		x, err := ArrayAt[T](seg, off, n)
		if err == nil {
			a.elems = x.elems
		}
		return err
	})
}
