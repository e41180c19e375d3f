package shm

import (
	"fmt"
	"os"
	"sync/atomic"
)

// Shared values
//
// Int32, Int64 and Uint64 each hold a pointer to their word in the segment,
// typed as the sync/atomic type of the same width; Float64 holds its bits
// in a uint64 word. Their operations are in ops.go.

// The types of the words the values point to.
type (
	atomicInt32  = atomic.Int32
	atomicInt64  = atomic.Int64
	atomicUint64 = atomic.Uint64
)

// ref is what every shared value holds: where it lives. Its methods are
// promoted to each value type (and listed by go doc under it).
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
// safe to call twice. A value whose segment is closed must not be used: a
// use faults (see [Guard]) rather than reaching other memory.
func (r *ref) Close() error {
	if r.owned {
		return r.seg.Close()
	}
	return nil
}

// span returns the offset in s.mem of size bytes at off in s.Bytes(), after
// checking that they lie inside the payload and that off is a multiple of
// align. Its errors wrap os.ErrInvalid: off and size are the caller's.
func (s *Segment) span(off, size, align int) (int, error) {
	if off < 0 || size < 0 || off > s.Size()-size {
		return 0, fmt.Errorf("shm: %d bytes at offset %d do not fit in a segment of %d bytes: %w", size, off, s.Size(), os.ErrInvalid)
	}
	if !aligned(s.mem, headerSize+off, align) {
		return 0, fmt.Errorf("shm: offset %d is not a multiple of %d, the size of the words placed there: %w", off, align, os.ErrInvalid)
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

// Int32 is a 32-bit integer in shared memory, like Python's Value('i'). Its
// operations are those of [sync/atomic.Int32], atomic across processes.
//
// The zero Int32 is not usable: get one from [NewInt32], [CreateInt32],
// [OpenInt32], [Int32At] or [Catalog.Int32], or decode a handle into a new
// one with [Int32.GobDecode]. An *Int32 is safe for concurrent use by
// goroutines and processes, and may be passed to a child process (see the
// package doc). It must not be copied (go vet catches copies): pass the
// pointer. It returns no slices. It may be used until [Int32.Close] or,
// placed with [Int32At], until its segment's [Segment.Close].
type Int32 struct {
	atomicInt32 *atomicInt32 // the word, in the segment's memory
	ref
}

// Int64 is a 64-bit integer in shared memory, like Python's Value('q'). Its
// operations are those of [sync/atomic.Int64], atomic across processes.
//
// The zero Int64 is not usable: get one from [NewInt64], [CreateInt64],
// [OpenInt64], [Int64At] or [Catalog.Int64], or decode a handle into a new
// one with [Int64.GobDecode]. An *Int64 is safe for concurrent use by
// goroutines and processes, and may be passed to a child process (see the
// package doc). It must not be copied (go vet catches copies): pass the
// pointer. It returns no slices. It may be used until [Int64.Close] or,
// placed with [Int64At], until its segment's [Segment.Close].
type Int64 struct {
	atomicInt64 *atomicInt64 // the word, in the segment's memory
	ref
}

// Uint64 is an unsigned 64-bit integer in shared memory, like Python's
// Value('Q'). Its operations are those of [sync/atomic.Uint64], atomic
// across processes; Add wraps around.
//
// The zero Uint64 is not usable: get one from [NewUint64], [CreateUint64],
// [OpenUint64], [Uint64At] or [Catalog.Uint64], or decode a handle into a
// new one with [Uint64.GobDecode]. A *Uint64 is safe for concurrent use by
// goroutines and processes, and may be passed to a child process (see the
// package doc). It must not be copied (go vet catches copies): pass the
// pointer. It returns no slices. It may be used until [Uint64.Close] or,
// placed with [Uint64At], until its segment's [Segment.Close].
type Uint64 struct {
	atomicUint64 *atomicUint64 // the word, in the segment's memory
	ref
}

// Float64 is a float64 in shared memory, like Python's Value('d'), with
// operations atomic across processes. CompareAndSwap compares bits, so NaN
// equals itself and -0 differs from +0.
//
// The zero Float64 is not usable: get one from [NewFloat64],
// [CreateFloat64], [OpenFloat64], [Float64At] or [Catalog.Float64], or
// decode a handle into a new one with [Float64.GobDecode]. A *Float64 is
// safe for concurrent use by goroutines and processes, and may be passed to
// a child process (see the package doc). It must not be copied (go vet
// catches copies): pass the pointer. It returns no slices. It may be used
// until [Float64.Close] or, placed with [Float64At], until its segment's
// [Segment.Close].
type Float64 struct {
	bits *atomic.Uint64 // the float's bits, in the segment's memory
	ref
}

// Int32At places an Int32 at off (a multiple of 4) in seg.Bytes(). The value
// is seg's memory as it is: it is not zeroed. An offset that is negative,
// misaligned or past the end is an error wrapping [os.ErrInvalid].
func Int32At(seg *Segment, off int) (*Int32, error) {
	p, err := valueAt[atomicInt32](seg, off, 4)
	if err != nil {
		return nil, err
	}
	return &Int32{atomicInt32: p, ref: ref{seg: seg, off: off, typ: KindInt32}}, nil
}

// Int64At places an Int64 at off (a multiple of 8) in seg.Bytes(). The value
// is seg's memory as it is: it is not zeroed. An offset that is negative,
// misaligned or past the end is an error wrapping [os.ErrInvalid].
func Int64At(seg *Segment, off int) (*Int64, error) {
	p, err := valueAt[atomicInt64](seg, off, 8)
	if err != nil {
		return nil, err
	}
	return &Int64{atomicInt64: p, ref: ref{seg: seg, off: off, typ: KindInt64}}, nil
}

// Uint64At places a Uint64 at off (a multiple of 8) in seg.Bytes(). The value
// is seg's memory as it is: it is not zeroed. An offset that is negative,
// misaligned or past the end is an error wrapping [os.ErrInvalid].
func Uint64At(seg *Segment, off int) (*Uint64, error) {
	p, err := valueAt[atomicUint64](seg, off, 8)
	if err != nil {
		return nil, err
	}
	return &Uint64{atomicUint64: p, ref: ref{seg: seg, off: off, typ: KindUint64}}, nil
}

// Float64At places a Float64 at off (a multiple of 8) in seg.Bytes(). The
// value is seg's memory as it is: it is not zeroed. An offset that is
// negative, misaligned or past the end is an error wrapping [os.ErrInvalid].
func Float64At(seg *Segment, off int) (*Float64, error) {
	p, err := valueAt[atomicUint64](seg, off, 8)
	if err != nil {
		return nil, err
	}
	return &Float64{bits: p, ref: ref{seg: seg, off: off, typ: KindFloat64}}, nil
}
