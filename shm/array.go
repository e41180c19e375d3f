package shm

import (
	"fmt"
	"math"
	"os"
	"sync/atomic"
)

// Elem is the set of element types an [Array] can hold. It is a type
// constraint only: it has no values.
type Elem interface {
	int8 | uint8 | int16 | uint16 | int32 | uint32 | int64 | uint64 | float32 | float64
}

// Array is a fixed-length array of numbers in shared memory, like Python's
// multiprocessing.Array, with operations on each element that are atomic
// across processes, as those of the value of the element's type ([Int8],
// ..., [Float64]) are: elements narrower than 32 bits are packed (an
// Array[int8] of n takes n bytes) and each is updated by a compare-and-swap
// of the aligned 32-bit word that contains it, which never changes its
// neighbours. An index out of range panics, as it does for a Go slice.
//
// The bulk operations [Array.CopyTo], [Array.CopyFrom] and
// [Array.Snapshot] are atomic per element, not as a whole: another process
// may change elements while they run, so a copy can mix elements from
// before and after its change. For a consistent copy, guard the array with
// a lock (semaphore.Locked pairs an array with its Mutex).
//
// The zero Array is not usable: get one from [NewArray], [CreateArray],
// [OpenArray], [ArrayAt] or [CatalogArray], or decode a handle into a new
// one with [Array.GobDecode]. An *Array is safe for concurrent use by
// goroutines and processes, and may be passed to a child process (see the
// package doc). It must not be copied (go vet catches copies): pass the
// pointer. It returns no slices: every access goes through its methods, so
// that each is atomic. It may be used until [Array.Close] or, placed with
// [ArrayAt], until its segment's [Segment.Close].
type Array[T Elem] struct {
	elems []T // in shared memory; every access is atomic
	ref
}

// Aliases for the array types by element, to match the value types. Each
// is its Array type; see [Array] for what they share.
type (
	Int8Array    = Array[int8]
	Uint8Array   = Array[uint8]
	Int16Array   = Array[int16]
	Uint16Array  = Array[uint16]
	Int32Array   = Array[int32]
	Uint32Array  = Array[uint32]
	Int64Array   = Array[int64]
	Uint64Array  = Array[uint64]
	Float32Array = Array[float32]
	Float64Array = Array[float64]
)

func elemKind[T Elem]() (kind Kind, size int) {
	switch any(T(0)).(type) {
	case int8:
		return KindInt8Array, 1
	case uint8:
		return KindUint8Array, 1
	case int16:
		return KindInt16Array, 2
	case uint16:
		return KindUint16Array, 2
	case int32:
		return KindInt32Array, 4
	case uint32:
		return KindUint32Array, 4
	case float32:
		return KindFloat32Array, 4
	case int64:
		return KindInt64Array, 8
	case uint64:
		return KindUint64Array, 8
	default:
		return KindFloat64Array, 8
	}
}

// ArrayKind returns the segment kind of an Array[T] and the size of its
// elements, for packages that place an array beside their own words.
func ArrayKind[T Elem]() (kind Kind, elemSize int) { return elemKind[T]() }

// ArrayAt places an array of n elements at off (a multiple of the element
// size) in seg.Bytes(). The elements are seg's memory as it is: not zeroed.
// A count or offset that is negative, misaligned or does not fit is an
// error wrapping [os.ErrInvalid].
func ArrayAt[T Elem](seg *Segment, off, n int) (*Array[T], error) {
	kind, size := elemKind[T]()
	if n < 0 || n > seg.Size()/size {
		return nil, fmt.Errorf("shm: %d elements of %d bytes do not fit in a segment of %d bytes: %w", n, size, seg.Size(), os.ErrInvalid)
	}
	at, err := seg.span(off, n*size, size)
	if err != nil {
		return nil, err
	}
	return &Array[T]{elems: sliceAt[T](seg.mem, at, n), ref: ref{seg: seg, off: off, n: n, typ: kind}}, nil
}

// ownArray places an array filling seg, which it then owns.
func ownArray[T Elem](seg *Segment, err error) (*Array[T], error) {
	if err != nil {
		return nil, err
	}
	_, size := elemKind[T]()
	a, err := ArrayAt[T](seg, 0, seg.Size()/size)
	if err != nil {
		seg.Close()
		return nil, err
	}
	a.owned = true
	return a, nil
}

func arrayKind[T Elem]() Kind {
	kind, _ := elemKind[T]()
	return kind
}

// arraySize returns the bytes n elements take, or an error if n is not
// 0 to MaxSize/size.
func arraySize[T Elem](n int) (int, error) {
	_, size := elemKind[T]()
	if n < 0 || n > MaxSize/size {
		return 0, fmt.Errorf("shm: array length %d, want 0 to %d: %w", n, MaxSize/size, os.ErrInvalid)
	}
	return n * size, nil
}

// NewArray returns an array of n zeros in an anonymous segment of its own.
// A length outside 0 to [MaxSize] bytes is an error wrapping [os.ErrInvalid].
func NewArray[T Elem](n int) (*Array[T], error) {
	size, err := arraySize[T](n)
	if err != nil {
		return nil, err
	}
	return ownArray[T](arrayKind[T]().CreateAnonymous(size))
}

// CreateArray returns an array of n zeros in a new named segment; see [Create].
func CreateArray[T Elem](name string, n int, opts *Options) (*Array[T], error) {
	size, err := arraySize[T](n)
	if err != nil {
		return nil, err
	}
	return ownArray[T](arrayKind[T]().Create(name, size, opts))
}

// OpenArray opens the array in the named segment made by [CreateArray].
func OpenArray[T Elem](name string) (*Array[T], error) {
	return ownArray[T](arrayKind[T]().Open(name))
}

// Len returns the number of elements.
func (a *Array[T]) Len() int { return len(a.elems) }

func (a *Array[T]) at(i int) *T {
	if uint(i) >= uint(len(a.elems)) {
		panic(fmt.Sprintf("shm: index %d out of range [0:%d]", i, len(a.elems)))
	}
	return &a.elems[i]
}

// Load returns element i.
func (a *Array[T]) Load(i int) T {
	switch p := any(a.at(i)).(type) {
	case *int8:
		return T(narrowAt(p).Load())
	case *uint8:
		return T(narrowAt(p).Load())
	case *int16:
		return T(narrowAt(p).Load())
	case *uint16:
		return T(narrowAt(p).Load())
	case *int32:
		return T(atomic.LoadInt32(p))
	case *uint32:
		return T(atomic.LoadUint32(p))
	case *float32:
		return T(math.Float32frombits(float32Bits(p).Load()))
	case *int64:
		return T(atomic.LoadInt64(p))
	case *uint64:
		return T(atomic.LoadUint64(p))
	case *float64:
		return T(loadFloat(floatBits(p)))
	}
	panic("unreachable")
}

// Store sets element i to v.
func (a *Array[T]) Store(i int, v T) {
	switch p := any(a.at(i)).(type) {
	case *int8:
		narrowAt(p).Store(int8(v))
	case *uint8:
		narrowAt(p).Store(uint8(v))
	case *int16:
		narrowAt(p).Store(int16(v))
	case *uint16:
		narrowAt(p).Store(uint16(v))
	case *int32:
		atomic.StoreInt32(p, int32(v))
	case *uint32:
		atomic.StoreUint32(p, uint32(v))
	case *float32:
		float32Bits(p).Store(math.Float32bits(float32(v)))
	case *int64:
		atomic.StoreInt64(p, int64(v))
	case *uint64:
		atomic.StoreUint64(p, uint64(v))
	case *float64:
		storeFloat(floatBits(p), float64(v))
	}
}

// Add adds delta to element i and returns the new value.
func (a *Array[T]) Add(i int, delta T) T {
	switch p := any(a.at(i)).(type) {
	case *int8:
		return T(narrowAt(p).Add(int8(delta)))
	case *uint8:
		return T(narrowAt(p).Add(uint8(delta)))
	case *int16:
		return T(narrowAt(p).Add(int16(delta)))
	case *uint16:
		return T(narrowAt(p).Add(uint16(delta)))
	case *int32:
		return T(atomic.AddInt32(p, int32(delta)))
	case *uint32:
		return T(atomic.AddUint32(p, uint32(delta)))
	case *float32:
		return T(addFloat32(float32Bits(p), float32(delta)))
	case *int64:
		return T(atomic.AddInt64(p, int64(delta)))
	case *uint64:
		return T(atomic.AddUint64(p, uint64(delta)))
	case *float64:
		return T(addFloat(floatBits(p), float64(delta)))
	}
	panic("unreachable")
}

// Swap sets element i to v and returns the old value.
func (a *Array[T]) Swap(i int, v T) T {
	switch p := any(a.at(i)).(type) {
	case *int8:
		return T(narrowAt(p).Swap(int8(v)))
	case *uint8:
		return T(narrowAt(p).Swap(uint8(v)))
	case *int16:
		return T(narrowAt(p).Swap(int16(v)))
	case *uint16:
		return T(narrowAt(p).Swap(uint16(v)))
	case *int32:
		return T(atomic.SwapInt32(p, int32(v)))
	case *uint32:
		return T(atomic.SwapUint32(p, uint32(v)))
	case *float32:
		return T(swapFloat32(float32Bits(p), float32(v)))
	case *int64:
		return T(atomic.SwapInt64(p, int64(v)))
	case *uint64:
		return T(atomic.SwapUint64(p, uint64(v)))
	case *float64:
		return T(swapFloat(floatBits(p), float64(v)))
	}
	panic("unreachable")
}

// CompareAndSwap sets element i to new if it is old (bit for bit, for floats).
func (a *Array[T]) CompareAndSwap(i int, old, new T) bool {
	switch p := any(a.at(i)).(type) {
	case *int8:
		return narrowAt(p).CompareAndSwap(int8(old), int8(new))
	case *uint8:
		return narrowAt(p).CompareAndSwap(uint8(old), uint8(new))
	case *int16:
		return narrowAt(p).CompareAndSwap(int16(old), int16(new))
	case *uint16:
		return narrowAt(p).CompareAndSwap(uint16(old), uint16(new))
	case *int32:
		return atomic.CompareAndSwapInt32(p, int32(old), int32(new))
	case *uint32:
		return atomic.CompareAndSwapUint32(p, uint32(old), uint32(new))
	case *float32:
		return casFloat32(float32Bits(p), float32(old), float32(new))
	case *int64:
		return atomic.CompareAndSwapInt64(p, int64(old), int64(new))
	case *uint64:
		return atomic.CompareAndSwapUint64(p, uint64(old), uint64(new))
	case *float64:
		return casFloat(floatBits(p), float64(old), float64(new))
	}
	panic("unreachable")
}

// CopyTo copies elements at, at+1, ... into dst, as many as fit, and
// returns how many it copied. Each element is loaded atomically; the copy
// as a whole is not atomic (see [Array]). An at outside 0 to Len() panics.
func (a *Array[T]) CopyTo(dst []T, at int) int {
	n := min(len(dst), a.rest(at))
	for i := range n {
		dst[i] = a.Load(at + i)
	}
	return n
}

// CopyFrom stores src into elements at, at+1, ..., as many as fit, and
// returns how many it stored. Each element is stored atomically; the copy
// as a whole is not atomic (see [Array]). An at outside 0 to Len() panics.
func (a *Array[T]) CopyFrom(src []T, at int) int {
	n := min(len(src), a.rest(at))
	for i := range n {
		a.Store(at+i, src[i])
	}
	return n
}

// Snapshot returns a new slice holding every element (Python's a[:]),
// each loaded atomically; the copy as a whole is not atomic (see [Array]).
// The slice is the caller's: it is not shared memory.
func (a *Array[T]) Snapshot() []T {
	s := make([]T, a.Len())
	a.CopyTo(s, 0)
	return s
}

// rest returns the number of elements from at to the end.
func (a *Array[T]) rest(at int) int {
	if uint(at) > uint(len(a.elems)) {
		panic(fmt.Sprintf("shm: index %d out of range [0:%d]", at, len(a.elems)))
	}
	return len(a.elems) - at
}
