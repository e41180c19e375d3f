package shm

import (
	"math"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/ipckit/ipckit/internal/handoff"
)

// Values of Python's other typecodes
//
// Uint32 is a sync/atomic word like Int32; Float32 keeps its bits in one,
// as Float64 does. Int8, Uint8, Int16, Uint16 and Bool are narrower than
// any atomic instruction Go offers, so each lives as a field of the
// aligned 32-bit word that contains it, and every operation is on that
// word: a load and a shift to read, and a compare-and-swap loop that
// changes only the field's bits to write. The neighbouring bytes of the
// word are never changed: a CAS writes them back as it read them, and
// fails, to be retried, if anyone changed them meanwhile, so concurrent
// updates of neighbouring bytes never lose one another (TestNarrowNeighbours).
// The word may reach up to 3 bytes past the value's segment (see wordOf);
// those bytes are only read and written back unchanged. Under contention a
// narrow update costs a retry where a word-sized one costs nothing: its
// neighbours contend with it.

// narrowInt is the set of the integer types narrower than 32 bits.
type narrowInt interface{ int8 | uint8 | int16 | uint16 }

// narrow is a field of an aligned 32-bit word in shared memory: the bits
// of mask, which start at bit shift. Int8, Uint8, Int16, Uint16, Bool and
// the arrays of those types call its methods.
type narrow[T narrowInt] struct {
	word  *atomic.Uint32
	shift uint32
	mask  uint32
}

// narrowAt returns the field of type T at p.
func narrowAt[T narrowInt](p *T) narrow[T] {
	w, shift := wordOf(unsafe.Pointer(p))
	bits := uint32(unsafe.Sizeof(*p)) * 8
	return narrow[T]{word: w, shift: shift, mask: (1<<bits - 1) << shift}
}

func (n narrow[T]) get(w uint32) T { return T(w >> n.shift) }

func (n narrow[T]) put(w uint32, x T) uint32 { return w&^n.mask | uint32(x)<<n.shift&n.mask }

// update sets the field to f(old) with a compare-and-swap of its word.
func (n narrow[T]) update(f func(T) T) (old, new T) {
	for {
		w := n.word.Load()
		old = n.get(w)
		new = f(old)
		if n.word.CompareAndSwap(w, n.put(w, new)) {
			return old, new
		}
	}
}

// Load atomically loads and returns the value.
func (n narrow[T]) Load() T { return n.get(n.word.Load()) }

// Store atomically stores x as the value.
func (n narrow[T]) Store(x T) { n.update(func(T) T { return x }) }

// Add atomically adds delta to the value and returns the new value. It
// wraps around on overflow.
func (n narrow[T]) Add(delta T) T {
	_, new := n.update(func(old T) T { return old + delta })
	return new
}

// Swap atomically stores x as the value and returns the old value.
func (n narrow[T]) Swap(x T) T {
	old, _ := n.update(func(T) T { return x })
	return old
}

// CompareAndSwap atomically stores new as the value if it is old, and
// reports whether it did.
func (n narrow[T]) CompareAndSwap(old, new T) bool {
	for {
		w := n.word.Load()
		if n.get(w) != old {
			return false
		}
		if n.word.CompareAndSwap(w, n.put(w, new)) {
			return true
		}
	}
}

// And atomically ands the value with mask and returns the old value.
func (n narrow[T]) And(mask T) T { return n.get(n.word.And(n.put(math.MaxUint32, mask))) }

// Or atomically ors the value with mask and returns the old value.
func (n narrow[T]) Or(mask T) T { return n.get(n.word.Or(n.put(0, mask))) }

// The narrow value types. Each doc says what Int8's says; see "Values of
// Python's other typecodes" in the source for how they are atomic.

// Int8 is an 8-bit integer in shared memory, like Python's Value('b'),
// with the operations of the sync/atomic integer types (Load, Store, Add,
// Swap, CompareAndSwap, And, Or), atomic across processes: each is a
// compare-and-swap of the aligned 32-bit word that contains the value
// (there is no 8-bit atomic in Go), which leaves the word's other bytes as
// they are.
//
// The zero Int8 is not usable: get one from [NewInt8], [CreateInt8],
// [OpenInt8] or [Int8At], or decode a handle into a new one with
// [Int8.GobDecode]. An *Int8 is safe for concurrent use by goroutines and
// processes, and may be passed to a child process (see the package doc).
// It must not be copied (go vet catches copies): pass the pointer. It
// returns no slices. It may be used until [Int8.Close] or, placed with
// [Int8At], until its segment's [Segment.Close].
type Int8 struct {
	field narrow[int8] // the value's bits in its word, in the segment's memory
	ref
}

// Uint8 is an unsigned 8-bit integer in shared memory, like Python's
// Value('B'); it is made and used as [Int8] is.
type Uint8 struct {
	field narrow[uint8] // the value's bits in its word, in the segment's memory
	ref
}

// Int16 is a 16-bit integer in shared memory, like Python's Value('h'); it
// is made and used as [Int8] is.
type Int16 struct {
	field narrow[int16] // the value's bits in its word, in the segment's memory
	ref
}

// Uint16 is an unsigned 16-bit integer in shared memory, like Python's
// Value('H'); it is made and used as [Int8] is.
type Uint16 struct {
	field narrow[uint16] // the value's bits in its word, in the segment's memory
	ref
}

// Bool is a boolean in shared memory, like Python's Value(ctypes.c_bool):
// one byte, 0 or 1, with Load, Store, Swap and CompareAndSwap atomic
// across processes as [Int8]'s are. It is made and used as [Int8] is.
type Bool struct {
	b narrow[uint8]
	ref
}

func b2u(x bool) uint8 {
	if x {
		return 1
	}
	return 0
}

// Load atomically loads and returns the value (any nonzero byte is true).
func (v *Bool) Load() bool { return v.b.Load() != 0 }

// Store atomically stores x as the value.
func (v *Bool) Store(x bool) { v.b.Store(b2u(x)) }

// Swap atomically stores x as the value and returns the old value.
func (v *Bool) Swap(x bool) bool { return v.b.Swap(b2u(x)) != 0 }

// CompareAndSwap atomically stores new as the value if it is old, and
// reports whether it did.
func (v *Bool) CompareAndSwap(old, new bool) bool {
	for {
		w := v.b.word.Load()
		if (v.b.get(w) != 0) != old {
			return false
		}
		if v.b.word.CompareAndSwap(w, v.b.put(w, b2u(new))) {
			return true
		}
	}
}

// Uint32 is an unsigned 32-bit integer in shared memory, like Python's
// Value('I'). Its operations are those of [sync/atomic.Uint32] (Load,
// Store, Add, Swap, CompareAndSwap, And, Or), atomic across processes; it
// is made and used as [Int32] is.
type Uint32 struct {
	atomicUint32 *atomicUint32 // the word, in the segment's memory
	ref
}

type atomicUint32 = atomic.Uint32

// Float32 is a float32 in shared memory, like Python's Value('f'), with
// operations atomic across processes; CompareAndSwap compares bits, as
// [Float64]'s does. It is made and used as [Int32] is.
type Float32 struct {
	bits *atomic.Uint32 // the float's bits, in the segment's memory
	ref
}

// Load atomically loads and returns the value.
func (f *Float32) Load() float32 { return math.Float32frombits(f.bits.Load()) }

// Store atomically stores x as the value.
func (f *Float32) Store(x float32) { f.bits.Store(math.Float32bits(x)) }

// Swap atomically stores x as the value and returns the old value.
func (f *Float32) Swap(x float32) float32 { return swapFloat32(f.bits, x) }

// CompareAndSwap atomically stores new as the value if it is old, bit for
// bit, and reports whether it did.
func (f *Float32) CompareAndSwap(old, new float32) bool { return casFloat32(f.bits, old, new) }

// Add atomically adds delta to the value and returns the new value.
func (f *Float32) Add(delta float32) float32 { return addFloat32(f.bits, delta) }

func swapFloat32(bits *atomic.Uint32, v float32) float32 {
	return math.Float32frombits(bits.Swap(math.Float32bits(v)))
}

func casFloat32(bits *atomic.Uint32, old, new float32) bool {
	return bits.CompareAndSwap(math.Float32bits(old), math.Float32bits(new))
}

// addFloat32 adds by compare-and-swap: there is no atomic float addition.
func addFloat32(bits *atomic.Uint32, delta float32) float32 {
	for {
		old := bits.Load()
		v := math.Float32frombits(old) + delta
		if bits.CompareAndSwap(old, math.Float32bits(v)) {
			return v
		}
	}
}

// narrowValueAt places a narrow field of type T at off (a multiple of its
// size) in seg.
func narrowValueAt[T narrowInt](seg *Segment, off int) (narrow[T], error) {
	p, err := valueAt[T](seg, off, int(unsafe.Sizeof(T(0))))
	if err != nil {
		return narrow[T]{}, err
	}
	return narrowAt(p), nil
}

// Int8At places an Int8 at off in seg.Bytes(). The value is seg's memory as
// it is: it is not zeroed. An offset that is negative or past the end is an
// error wrapping [os.ErrInvalid].
func Int8At(seg *Segment, off int) (*Int8, error) {
	n, err := narrowValueAt[int8](seg, off)
	if err != nil {
		return nil, err
	}
	return &Int8{field: n, ref: ref{seg: seg, off: off, typ: KindInt8}}, nil
}

// Uint8At places a Uint8 at off in seg.Bytes(); see [Int8At].
func Uint8At(seg *Segment, off int) (*Uint8, error) {
	n, err := narrowValueAt[uint8](seg, off)
	if err != nil {
		return nil, err
	}
	return &Uint8{field: n, ref: ref{seg: seg, off: off, typ: KindUint8}}, nil
}

// Int16At places an Int16 at off (a multiple of 2) in seg.Bytes(); see
// [Int8At].
func Int16At(seg *Segment, off int) (*Int16, error) {
	n, err := narrowValueAt[int16](seg, off)
	if err != nil {
		return nil, err
	}
	return &Int16{field: n, ref: ref{seg: seg, off: off, typ: KindInt16}}, nil
}

// Uint16At places a Uint16 at off (a multiple of 2) in seg.Bytes(); see
// [Int8At].
func Uint16At(seg *Segment, off int) (*Uint16, error) {
	n, err := narrowValueAt[uint16](seg, off)
	if err != nil {
		return nil, err
	}
	return &Uint16{field: n, ref: ref{seg: seg, off: off, typ: KindUint16}}, nil
}

// BoolAt places a Bool at off in seg.Bytes(); see [Int8At].
func BoolAt(seg *Segment, off int) (*Bool, error) {
	n, err := narrowValueAt[uint8](seg, off)
	if err != nil {
		return nil, err
	}
	return &Bool{b: n, ref: ref{seg: seg, off: off, typ: KindBool}}, nil
}

// Uint32At places a Uint32 at off (a multiple of 4) in seg.Bytes(); see
// [Int32At].
func Uint32At(seg *Segment, off int) (*Uint32, error) {
	p, err := valueAt[atomicUint32](seg, off, 4)
	if err != nil {
		return nil, err
	}
	return &Uint32{atomicUint32: p, ref: ref{seg: seg, off: off, typ: KindUint32}}, nil
}

// Float32At places a Float32 at off (a multiple of 4) in seg.Bytes(); see
// [Int32At].
func Float32At(seg *Segment, off int) (*Float32, error) {
	p, err := valueAt[atomicUint32](seg, off, 4)
	if err != nil {
		return nil, err
	}
	return &Float32{bits: p, ref: ref{seg: seg, off: off, typ: KindFloat32}}, nil
}

var (
	int8Spec    = spec[Int8, *Int8]{KindInt8, 1, Int8At}
	uint8Spec   = spec[Uint8, *Uint8]{KindUint8, 1, Uint8At}
	int16Spec   = spec[Int16, *Int16]{KindInt16, 2, Int16At}
	uint16Spec  = spec[Uint16, *Uint16]{KindUint16, 2, Uint16At}
	boolSpec    = spec[Bool, *Bool]{KindBool, 1, BoolAt}
	uint32Spec  = spec[Uint32, *Uint32]{KindUint32, 4, Uint32At}
	float32Spec = spec[Float32, *Float32]{KindFloat32, 4, Float32At}
)

// NewInt8 returns a zero Int8 in an anonymous segment of its own.
func NewInt8() (*Int8, error) { return int8Spec.anonymous() }

// CreateInt8 returns a zero Int8 in a new named segment; see [Create].
func CreateInt8(name string, opts *Options) (*Int8, error) { return int8Spec.create(name, opts) }

// OpenInt8 opens the Int8 in the named segment made by [CreateInt8].
func OpenInt8(name string) (*Int8, error) { return int8Spec.open(name) }

// NewUint8 returns a zero Uint8 in an anonymous segment of its own.
func NewUint8() (*Uint8, error) { return uint8Spec.anonymous() }

// CreateUint8 returns a zero Uint8 in a new named segment; see [Create].
func CreateUint8(name string, opts *Options) (*Uint8, error) { return uint8Spec.create(name, opts) }

// OpenUint8 opens the Uint8 in the named segment made by [CreateUint8].
func OpenUint8(name string) (*Uint8, error) { return uint8Spec.open(name) }

// NewInt16 returns a zero Int16 in an anonymous segment of its own.
func NewInt16() (*Int16, error) { return int16Spec.anonymous() }

// CreateInt16 returns a zero Int16 in a new named segment; see [Create].
func CreateInt16(name string, opts *Options) (*Int16, error) { return int16Spec.create(name, opts) }

// OpenInt16 opens the Int16 in the named segment made by [CreateInt16].
func OpenInt16(name string) (*Int16, error) { return int16Spec.open(name) }

// NewUint16 returns a zero Uint16 in an anonymous segment of its own.
func NewUint16() (*Uint16, error) { return uint16Spec.anonymous() }

// CreateUint16 returns a zero Uint16 in a new named segment; see [Create].
func CreateUint16(name string, opts *Options) (*Uint16, error) { return uint16Spec.create(name, opts) }

// OpenUint16 opens the Uint16 in the named segment made by [CreateUint16].
func OpenUint16(name string) (*Uint16, error) { return uint16Spec.open(name) }

// NewBool returns a false Bool in an anonymous segment of its own.
func NewBool() (*Bool, error) { return boolSpec.anonymous() }

// CreateBool returns a false Bool in a new named segment; see [Create].
func CreateBool(name string, opts *Options) (*Bool, error) { return boolSpec.create(name, opts) }

// OpenBool opens the Bool in the named segment made by [CreateBool].
func OpenBool(name string) (*Bool, error) { return boolSpec.open(name) }

// NewUint32 returns a zero Uint32 in an anonymous segment of its own.
func NewUint32() (*Uint32, error) { return uint32Spec.anonymous() }

// CreateUint32 returns a zero Uint32 in a new named segment; see [Create].
func CreateUint32(name string, opts *Options) (*Uint32, error) { return uint32Spec.create(name, opts) }

// OpenUint32 opens the Uint32 in the named segment made by [CreateUint32].
func OpenUint32(name string) (*Uint32, error) { return uint32Spec.open(name) }

// NewFloat32 returns a zero Float32 in an anonymous segment of its own.
func NewFloat32() (*Float32, error) { return float32Spec.anonymous() }

// CreateFloat32 returns a zero Float32 in a new named segment; see [Create].
func CreateFloat32(name string, opts *Options) (*Float32, error) {
	return float32Spec.create(name, opts)
}

// OpenFloat32 opens the Float32 in the named segment made by [CreateFloat32].
func OpenFloat32(name string) (*Float32, error) { return float32Spec.open(name) }

// Handles of the values above; see "Handles" in handle.go.

func init() {
	handoff.Register(
		handoff.For(func(v *Int8) []*os.File { return v.Segment().handoffFiles() }),
		handoff.For(func(v *Uint8) []*os.File { return v.Segment().handoffFiles() }),
		handoff.For(func(v *Int16) []*os.File { return v.Segment().handoffFiles() }),
		handoff.For(func(v *Uint16) []*os.File { return v.Segment().handoffFiles() }),
		handoff.For(func(v *Bool) []*os.File { return v.Segment().handoffFiles() }),
		handoff.For(func(v *Uint32) []*os.File { return v.Segment().handoffFiles() }),
		handoff.For(func(v *Float32) []*os.File { return v.Segment().handoffFiles() }),
		handoff.For(func(a *Array[int8]) []*os.File { return a.Segment().handoffFiles() }),
		handoff.For(func(a *Array[uint8]) []*os.File { return a.Segment().handoffFiles() }),
		handoff.For(func(a *Array[int16]) []*os.File { return a.Segment().handoffFiles() }),
		handoff.For(func(a *Array[uint16]) []*os.File { return a.Segment().handoffFiles() }),
		handoff.For(func(a *Array[uint32]) []*os.File { return a.Segment().handoffFiles() }),
		handoff.For(func(a *Array[float32]) []*os.File { return a.Segment().handoffFiles() }),
	)
}

// decodeNarrow attaches a narrow field of a new value to the value a
// handle names.
func decodeNarrow[T narrowInt](b []byte, r *ref, kind Kind, n *narrow[T]) error {
	return decodeRef(b, r, kind, func(seg *Segment, off, _ int) (err error) {
		*n, err = narrowValueAt[T](seg, off)
		return err
	})
}

// GobDecode attaches v, which must be new, to the value a handle names.
func (v *Int8) GobDecode(b []byte) error { return decodeNarrow(b, &v.ref, KindInt8, &v.field) }

// GobDecode attaches v, which must be new, to the value a handle names.
func (v *Uint8) GobDecode(b []byte) error { return decodeNarrow(b, &v.ref, KindUint8, &v.field) }

// GobDecode attaches v, which must be new, to the value a handle names.
func (v *Int16) GobDecode(b []byte) error { return decodeNarrow(b, &v.ref, KindInt16, &v.field) }

// GobDecode attaches v, which must be new, to the value a handle names.
func (v *Uint16) GobDecode(b []byte) error { return decodeNarrow(b, &v.ref, KindUint16, &v.field) }

// GobDecode attaches v, which must be new, to the value a handle names.
func (v *Bool) GobDecode(b []byte) error { return decodeNarrow(b, &v.ref, KindBool, &v.b) }

// GobDecode attaches v, which must be new, to the value a handle names.
func (v *Uint32) GobDecode(b []byte) error {
	return decodeRef(b, &v.ref, KindUint32, func(seg *Segment, off, _ int) (err error) {
		v.atomicUint32, err = valueAt[atomicUint32](seg, off, 4)
		return err
	})
}

// GobDecode attaches f, which must be new, to the value a handle names.
func (f *Float32) GobDecode(b []byte) error {
	return decodeRef(b, &f.ref, KindFloat32, func(seg *Segment, off, _ int) (err error) {
		f.bits, err = valueAt[atomicUint32](seg, off, 4)
		return err
	})
}
