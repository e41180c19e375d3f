package shm

import (
	"math"
	"sync/atomic"
)

// Operations of the shared values
//
// Each method below is one call: for Int32, Int64 and Uint64, of the
// sync/atomic method of the same name on the value's word, which the
// compiler inlines, so a shared value costs what a sync/atomic one does;
// for Float64, of the float operation at the end of this file, which
// Array[float64] uses too. They are declared on the exported types, not
// promoted from an embedded field, so that go doc lists them; and grouped
// by operation, one line per type, so that what each type does is read
// once.

// Load atomically loads and returns the value.
func (v *Int32) Load() int32 { return v.atomicInt32.Load() }

// Load atomically loads and returns the value.
func (v *Int64) Load() int64 { return v.atomicInt64.Load() }

// Load atomically loads and returns the value.
func (v *Uint64) Load() uint64 { return v.atomicUint64.Load() }

// Load atomically loads and returns the value.
func (f *Float64) Load() float64 { return loadFloat(f.bits) }

// Store atomically stores x as the value.
func (v *Int32) Store(x int32) { v.atomicInt32.Store(x) }

// Store atomically stores x as the value.
func (v *Int64) Store(x int64) { v.atomicInt64.Store(x) }

// Store atomically stores x as the value.
func (v *Uint64) Store(x uint64) { v.atomicUint64.Store(x) }

// Store atomically stores x as the value.
func (f *Float64) Store(x float64) { storeFloat(f.bits, x) }

// Add atomically adds delta to the value and returns the new value. It
// wraps around on overflow.
func (v *Int32) Add(delta int32) int32 { return v.atomicInt32.Add(delta) }

// Add atomically adds delta to the value and returns the new value. It
// wraps around on overflow.
func (v *Int64) Add(delta int64) int64 { return v.atomicInt64.Add(delta) }

// Add atomically adds delta to the value and returns the new value. It
// wraps around; to subtract d, add ^uint64(d-1).
func (v *Uint64) Add(delta uint64) uint64 { return v.atomicUint64.Add(delta) }

// Add atomically adds delta to the value and returns the new value.
func (f *Float64) Add(delta float64) float64 { return addFloat(f.bits, delta) }

// Swap atomically stores x as the value and returns the old value.
func (v *Int32) Swap(x int32) int32 { return v.atomicInt32.Swap(x) }

// Swap atomically stores x as the value and returns the old value.
func (v *Int64) Swap(x int64) int64 { return v.atomicInt64.Swap(x) }

// Swap atomically stores x as the value and returns the old value.
func (v *Uint64) Swap(x uint64) uint64 { return v.atomicUint64.Swap(x) }

// Swap atomically stores x as the value and returns the old value.
func (f *Float64) Swap(x float64) float64 { return swapFloat(f.bits, x) }

// CompareAndSwap atomically stores new as the value if it is old, and
// reports whether it did.
func (v *Int32) CompareAndSwap(old, new int32) bool { return v.atomicInt32.CompareAndSwap(old, new) }

// CompareAndSwap atomically stores new as the value if it is old, and
// reports whether it did.
func (v *Int64) CompareAndSwap(old, new int64) bool { return v.atomicInt64.CompareAndSwap(old, new) }

// CompareAndSwap atomically stores new as the value if it is old, and
// reports whether it did.
func (v *Uint64) CompareAndSwap(old, new uint64) bool { return v.atomicUint64.CompareAndSwap(old, new) }

// CompareAndSwap atomically stores new as the value if it is old, bit for
// bit, and reports whether it did.
func (f *Float64) CompareAndSwap(old, new float64) bool { return casFloat(f.bits, old, new) }

// And atomically ands the value with mask and returns the old value.
func (v *Int32) And(mask int32) int32 { return v.atomicInt32.And(mask) }

// And atomically ands the value with mask and returns the old value.
func (v *Int64) And(mask int64) int64 { return v.atomicInt64.And(mask) }

// And atomically ands the value with mask and returns the old value.
func (v *Uint64) And(mask uint64) uint64 { return v.atomicUint64.And(mask) }

// Or atomically ors the value with mask and returns the old value.
func (v *Int32) Or(mask int32) int32 { return v.atomicInt32.Or(mask) }

// Or atomically ors the value with mask and returns the old value.
func (v *Int64) Or(mask int64) int64 { return v.atomicInt64.Or(mask) }

// Or atomically ors the value with mask and returns the old value.
func (v *Uint64) Or(mask uint64) uint64 { return v.atomicUint64.Or(mask) }

// Float operations, for Float64 and Array[float64]: a float lives as its
// bits in a uint64 word.

func loadFloat(bits *atomic.Uint64) float64 { return math.Float64frombits(bits.Load()) }

func storeFloat(bits *atomic.Uint64, v float64) { bits.Store(math.Float64bits(v)) }

func swapFloat(bits *atomic.Uint64, v float64) float64 {
	return math.Float64frombits(bits.Swap(math.Float64bits(v)))
}

func casFloat(bits *atomic.Uint64, old, new float64) bool {
	return bits.CompareAndSwap(math.Float64bits(old), math.Float64bits(new))
}

// addFloat adds by compare-and-swap: there is no atomic float addition.
func addFloat(bits *atomic.Uint64, delta float64) float64 {
	for {
		old := bits.Load()
		v := math.Float64frombits(old) + delta
		if bits.CompareAndSwap(old, math.Float64bits(v)) {
			return v
		}
	}
}
