package shm

import (
	"fmt"
	"math"
	"sync/atomic"
)

// The atomic types whose methods the shared values expose. Embedding a
// pointer to them makes Int64.Add exactly atomic.Int64.Add, inlined, with no
// cost for being shared.
type (
	atomicInt32  = atomic.Int32
	atomicInt64  = atomic.Int64
	atomicUint64 = atomic.Uint64
)

// ref is what every shared value holds: where it lives.
type ref struct {
	_     noCopy
	seg   *Segment
	off   int  // offset of the value in seg.Bytes()
	n     int  // element count, arrays only
	typ   Kind // the value's kind: KindInt64, KindInt64Array, ...
	owned bool // the value made seg and closes it
}

func (r *ref) base() *ref { return r }

// Segment returns the segment the value lives in.
func (r *ref) Segment() *Segment { return r.seg }

// Close releases the value's own segment, if it made or opened one; a value
// placed in a caller's segment with an ...At function leaves it alone. It is
// safe to call twice.
func (r *ref) Close() error {
	if r.owned {
		return r.seg.Close()
	}
	return nil
}

// span returns the offset in s.mem of size bytes at off in s.Bytes(), after
// checking that they lie inside the payload and that off is a multiple of
// align.
func (s *Segment) span(off, size, align int) (int, error) {
	if off < 0 || size < 0 || off > s.Size()-size {
		return 0, fmt.Errorf("%w: %d bytes at offset %d of a %d-byte segment", ErrRange, size, off, s.Size())
	}
	if !aligned(s.mem, headerSize+off, align) {
		return 0, fmt.Errorf("%w: offset %d for %d-byte words", ErrAlign, off, align)
	}
	return headerSize + off, nil
}

// valueAt places a word of type W at off in seg.
func valueAt[W any](seg *Segment, off, size int) (*W, error) {
	at, err := seg.span(off, size, size)
	if err != nil {
		return nil, err
	}
	return ptrAt[W](seg.mem, at), nil
}

// Int32 is a 32-bit integer in shared memory, like Python's Value('i').
// It has the methods of [sync/atomic.Int32]: Load, Store, Add, Swap,
// CompareAndSwap, And and Or, each atomic across processes.
//
// An *Int32 is safe for concurrent use and may be passed to a child process
// (see the package doc). It must not be copied. The zero Int32 is not
// usable: get one from NewInt32, CreateInt32, OpenInt32 or Int32At.
type Int32 struct {
	*atomicInt32
	ref
}

// Int64 is a 64-bit integer in shared memory, like Python's Value('q').
// It has the methods of [sync/atomic.Int64]: Load, Store, Add, Swap,
// CompareAndSwap, And and Or, each atomic across processes.
//
// An *Int64 is safe for concurrent use and may be passed to a child process
// (see the package doc). It must not be copied. The zero Int64 is not
// usable: get one from NewInt64, CreateInt64, OpenInt64 or Int64At.
type Int64 struct {
	*atomicInt64
	ref
}

// Uint64 is an unsigned 64-bit integer in shared memory. It has the methods
// of [sync/atomic.Uint64]: Load, Store, Add, Swap, CompareAndSwap, And and
// Or, each atomic across processes.
//
// A *Uint64 is safe for concurrent use and may be passed to a child process
// (see the package doc). It must not be copied. The zero Uint64 is not
// usable: get one from NewUint64, CreateUint64, OpenUint64 or Uint64At.
type Uint64 struct {
	*atomicUint64
	ref
}

// Float64 is a float64 in shared memory, like Python's Value('d'), with
// atomic operations. Comparisons in CompareAndSwap are of the bits, so NaN
// equals itself and -0 differs from +0.
//
// A *Float64 is safe for concurrent use and may be passed to a child process
// (see the package doc). It must not be copied. The zero Float64 is not
// usable: get one from NewFloat64, CreateFloat64, OpenFloat64 or Float64At.
type Float64 struct {
	bits *atomic.Uint64
	ref
}

// Int32At places an Int32 at off (a multiple of 4) in seg.Bytes(). The value
// is seg's memory as it is: it is not zeroed.
func Int32At(seg *Segment, off int) (*Int32, error) {
	p, err := valueAt[atomicInt32](seg, off, 4)
	if err != nil {
		return nil, err
	}
	return &Int32{atomicInt32: p, ref: ref{seg: seg, off: off, typ: KindInt32}}, nil
}

// Int64At places an Int64 at off (a multiple of 8) in seg.Bytes(). The value
// is seg's memory as it is: it is not zeroed.
func Int64At(seg *Segment, off int) (*Int64, error) {
	p, err := valueAt[atomicInt64](seg, off, 8)
	if err != nil {
		return nil, err
	}
	return &Int64{atomicInt64: p, ref: ref{seg: seg, off: off, typ: KindInt64}}, nil
}

// Uint64At places a Uint64 at off (a multiple of 8) in seg.Bytes(). The value
// is seg's memory as it is: it is not zeroed.
func Uint64At(seg *Segment, off int) (*Uint64, error) {
	p, err := valueAt[atomicUint64](seg, off, 8)
	if err != nil {
		return nil, err
	}
	return &Uint64{atomicUint64: p, ref: ref{seg: seg, off: off, typ: KindUint64}}, nil
}

// Float64At places a Float64 at off (a multiple of 8) in seg.Bytes(). The
// value is seg's memory as it is: it is not zeroed.
func Float64At(seg *Segment, off int) (*Float64, error) {
	p, err := valueAt[atomic.Uint64](seg, off, 8)
	if err != nil {
		return nil, err
	}
	return &Float64{bits: p, ref: ref{seg: seg, off: off, typ: KindFloat64}}, nil
}

// Load returns the value.
func (f *Float64) Load() float64 { return math.Float64frombits(f.bits.Load()) }

// Store sets the value to v.
func (f *Float64) Store(v float64) { f.bits.Store(math.Float64bits(v)) }

// Swap sets the value to v and returns the old one.
func (f *Float64) Swap(v float64) float64 {
	return math.Float64frombits(f.bits.Swap(math.Float64bits(v)))
}

// CompareAndSwap sets the value to new if it is old, bit for bit.
func (f *Float64) CompareAndSwap(old, new float64) bool {
	return f.bits.CompareAndSwap(math.Float64bits(old), math.Float64bits(new))
}

// Add adds delta to the value and returns the new value.
func (f *Float64) Add(delta float64) float64 { return addFloat(f.bits, delta) }

func addFloat(bits *atomic.Uint64, delta float64) float64 {
	for {
		old := bits.Load()
		v := math.Float64frombits(old) + delta
		if bits.CompareAndSwap(old, math.Float64bits(v)) {
			return v
		}
	}
}
