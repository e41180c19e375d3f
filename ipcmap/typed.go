package ipcmap

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"unsafe"
)

// Key is the set of key types a [Typed] map takes: strings and byte
// slices (and types defined on them). It is a type constraint only.
type Key interface {
	~string | ~[]byte
}

// Typed is a map of keys of type K and values of type V on top of a
// [Map]: Python's Manager().dict() with one type of key and value.
//
// Keys are their bytes. A value's bytes are chosen once, from V:
//
//   - If V is made of numbers only (integers, floats, complex numbers, and
//     arrays and structs of them with no padding between fields), a value
//     is V's memory, byte for byte: no encoding, no allocation. Every
//     process must use the same V, built for the same architecture; a
//     value of another length is [ErrCorrupt]. Bools go the other way:
//     their byte must be 0 or 1, which raw bytes from another process
//     need not be.
//   - Otherwise a value is one self-contained encoding/gob stream.
//
// [Typed.CompareAndSwap] compares these bytes: for a gob-encoded V, two
// equal values whose encodings differ (maps, whose order gob does not fix)
// do not match.
//
// A Typed is safe for concurrent use, like its Map, and implements
// gob.GobEncoder and gob.GobDecoder like it. The zero Typed is not usable:
// get one from [NewTyped] or by gob-decoding a handle. A Typed may be
// copied; the copies share the Map, and [Typed.Close] closes it for all of
// them. Values are copied in and out.
type Typed[K Key, V any] struct {
	m   *Map
	raw bool
}

// NewTyped returns a typed view of m.
func NewTyped[K Key, V any](m *Map) *Typed[K, V] {
	return &Typed[K, V]{m: m, raw: rawBytes(reflect.TypeFor[V]())}
}

// rawBytes reports whether every byte of a typ is part of a number, so
// that any bytes of its size are a valid typ and equal values have equal
// bytes.
func rawBytes(typ reflect.Type) bool {
	switch typ.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return rawBytes(typ.Elem())
	case reflect.Struct:
		var sum uintptr
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Offset != sum || !rawBytes(f.Type) {
				return false
			}
			sum += f.Type.Size()
		}
		return sum == typ.Size()
	}
	return false
}

// Map returns the underlying byte map.
func (t *Typed[K, V]) Map() *Map { return t.m }

// keyBytes returns k's bytes (a copy for a string key).
func keyBytes[K Key](k K) []byte { return []byte(k) }

// encode returns v's bytes.
func (t *Typed[K, V]) encode(v *V) ([]byte, error) {
	if t.raw {
		return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v)), nil
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		return nil, fmt.Errorf("ipcmap: encode %T: %w", *v, err)
	}
	return buf.Bytes(), nil
}

// decode returns the value whose bytes are b.
func (t *Typed[K, V]) decode(b []byte) (V, error) {
	var v V
	if t.raw {
		dst := unsafe.Slice((*byte)(unsafe.Pointer(&v)), unsafe.Sizeof(v))
		if len(b) != len(dst) {
			return v, fmt.Errorf("ipcmap: a %d-byte value for a %d-byte %T: %w", len(b), len(dst), v, ErrCorrupt)
		}
		copy(dst, b)
		return v, nil
	}
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&v); err != nil {
		return v, fmt.Errorf("ipcmap: decode %T: %v: %w", v, err, ErrCorrupt)
	}
	return v, nil
}

// Get returns k's value and whether k is in the map; see [Map.Get].
func (t *Typed[K, V]) Get(k K) (V, bool, error) {
	var zero V
	b, ok, err := t.m.Get(keyBytes(k))
	if err != nil || !ok {
		return zero, false, err
	}
	v, err := t.decode(b)
	if err != nil {
		return zero, false, err
	}
	return v, true, nil
}

// Set sets k's value to v; see [Map.Set].
func (t *Typed[K, V]) Set(ctx context.Context, k K, v V) error {
	b, err := t.encode(&v)
	if err != nil {
		return err
	}
	return t.m.Set(ctx, keyBytes(k), b)
}

// Delete removes k and reports whether it was there; see [Map.Delete].
func (t *Typed[K, V]) Delete(ctx context.Context, k K) (bool, error) {
	return t.m.Delete(ctx, keyBytes(k))
}

// CompareAndSwap sets k's value to new if it is old (compared as bytes;
// see [Typed]), and reports whether it did; see [Map.CompareAndSwap].
func (t *Typed[K, V]) CompareAndSwap(ctx context.Context, k K, old, new V) (bool, error) {
	ob, err := t.encode(&old)
	if err != nil {
		return false, err
	}
	nb, err := t.encode(&new)
	if err != nil {
		return false, err
	}
	return t.m.CompareAndSwap(ctx, keyBytes(k), ob, nb)
}

// LoadOrStore returns k's value and true if k is in the map; else it
// stores v and returns v and false; see [Map.LoadOrStore].
func (t *Typed[K, V]) LoadOrStore(ctx context.Context, k K, v V) (actual V, loaded bool, err error) {
	b, err := t.encode(&v)
	if err != nil {
		return v, false, err
	}
	cur, loaded, err := t.m.LoadOrStore(ctx, keyBytes(k), b)
	if err != nil && !errors.Is(err, ErrOwnerDead) || !loaded {
		return v, loaded, err
	}
	actual, derr := t.decode(cur)
	if derr != nil {
		return actual, true, derr
	}
	return actual, true, err
}

// Len returns the number of entries; see [Map.Len].
func (t *Typed[K, V]) Len() (int, error) { return t.m.Len() }

// Range returns an iterator over the entries, as [Map.Range] does; it also
// ends early at a value that does not decode as a V.
func (t *Typed[K, V]) Range() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for kb, vb := range t.m.Range() {
			v, err := t.decode(vb)
			if err != nil || !yield(K(kb), v) {
				return
			}
		}
	}
}

// Close releases this handle; see [Map.Close].
func (t *Typed[K, V]) Close() error { return t.m.Close() }

// GobEncode encodes a handle to the map; see [Map.GobEncode].
func (t *Typed[K, V]) GobEncode() ([]byte, error) { return t.m.GobEncode() }

// GobDecode attaches t, which must be new, to the map a handle names.
func (t *Typed[K, V]) GobDecode(b []byte) error {
	m := new(Map)
	if err := m.GobDecode(b); err != nil {
		return err
	}
	t.m, t.raw = m, rawBytes(reflect.TypeFor[V]())
	return nil
}
