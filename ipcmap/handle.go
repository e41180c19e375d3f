package ipcmap

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"os"
	"reflect"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/shm"
)

// wireMap is a map's handle: its segment's handle (a name, or an inherited
// descriptor inside spawn). The shape is read back from the control block,
// which decoding validates.
type wireMap struct {
	Seg *shm.Segment
}

// GobEncode encodes a handle to the map (never its contents): a named map
// travels as its name, an anonymous one ([New]) as a descriptor that spawn
// passes to the child. A heap map cannot travel ([shm.ErrHeap]); a closed
// handle returns an error wrapping [os.ErrClosed].
func (m *Map) GobEncode() ([]byte, error) {
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.leave()
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(wireMap{Seg: m.seg}); err != nil {
		return nil, fmt.Errorf("ipcmap: encode handle: %w", err)
	}
	return buf.Bytes(), nil
}

// GobDecode attaches m, which must be new (zero), to the map a handle
// names, after validating the map's layout ([ErrCorrupt] if it is
// invalid). Release it with [Map.Close].
func (m *Map) GobDecode(b []byte) error {
	var w wireMap
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&w); err != nil {
		return fmt.Errorf("ipcmap: decode handle: %w", err)
	}
	if w.Seg == nil {
		return fmt.Errorf("ipcmap: decode handle: no segment: %w", ErrCorrupt)
	}
	if k := w.Seg.Kind(); k != shm.KindMap {
		w.Seg.Close()
		return fmt.Errorf("ipcmap: decode handle: segment holds %v, not a map: %w", k, shm.ErrKind)
	}
	if err := m.attachTo(w.Seg); err != nil {
		w.Seg.Close()
		return fmt.Errorf("ipcmap: decode handle: %w", err)
	}
	return nil
}

// The handle types of this package, for internal/handoff: spawn passes the
// file of a map's segment to a child that gets the map in its argument.
// Typed[K, V] is claimed for every K and V at once: a resolver sees each
// instantiation as a type of this package whose pointer has the Map
// method.
func init() {
	pkg := reflect.TypeFor[Map]().PkgPath()
	typed := reflect.TypeFor[interface{ Map() *Map }]()
	handoff.Register(
		handoff.For(func(m *Map) []*os.File { return handoff.Files(m.Segment()) }),
		func(t reflect.Type) func(any) []*os.File {
			if t.Kind() != reflect.Struct || t.PkgPath() != pkg || !reflect.PointerTo(t).Implements(typed) {
				return nil
			}
			return func(p any) []*os.File { return handoff.Files(p.(interface{ Map() *Map }).Map()) }
		},
	)
}
