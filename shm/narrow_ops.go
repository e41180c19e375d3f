package shm

// Operations of the values of Python's other typecodes, as in ops.go: one
// line per type, declared on the exported types so that go doc lists them.
// The narrow ones call their field's (narrow.go); Uint32's are its
// sync/atomic word's.

// Load atomically loads and returns the value.
func (v *Int8) Load() int8 { return v.field.Load() }

// Load atomically loads and returns the value.
func (v *Uint8) Load() uint8 { return v.field.Load() }

// Load atomically loads and returns the value.
func (v *Int16) Load() int16 { return v.field.Load() }

// Load atomically loads and returns the value.
func (v *Uint16) Load() uint16 { return v.field.Load() }

// Load atomically loads and returns the value.
func (v *Uint32) Load() uint32 { return v.atomicUint32.Load() }

// Store atomically stores x as the value.
func (v *Int8) Store(x int8) { v.field.Store(x) }

// Store atomically stores x as the value.
func (v *Uint8) Store(x uint8) { v.field.Store(x) }

// Store atomically stores x as the value.
func (v *Int16) Store(x int16) { v.field.Store(x) }

// Store atomically stores x as the value.
func (v *Uint16) Store(x uint16) { v.field.Store(x) }

// Store atomically stores x as the value.
func (v *Uint32) Store(x uint32) { v.atomicUint32.Store(x) }

// Add atomically adds delta to the value and returns the new value. It
// wraps around on overflow.
func (v *Int8) Add(delta int8) int8 { return v.field.Add(delta) }

// Add atomically adds delta to the value and returns the new value. It
// wraps around on overflow.
func (v *Uint8) Add(delta uint8) uint8 { return v.field.Add(delta) }

// Add atomically adds delta to the value and returns the new value. It
// wraps around on overflow.
func (v *Int16) Add(delta int16) int16 { return v.field.Add(delta) }

// Add atomically adds delta to the value and returns the new value. It
// wraps around on overflow.
func (v *Uint16) Add(delta uint16) uint16 { return v.field.Add(delta) }

// Add atomically adds delta to the value and returns the new value. It
// wraps around on overflow.
func (v *Uint32) Add(delta uint32) uint32 { return v.atomicUint32.Add(delta) }

// Swap atomically stores x as the value and returns the old value.
func (v *Int8) Swap(x int8) int8 { return v.field.Swap(x) }

// Swap atomically stores x as the value and returns the old value.
func (v *Uint8) Swap(x uint8) uint8 { return v.field.Swap(x) }

// Swap atomically stores x as the value and returns the old value.
func (v *Int16) Swap(x int16) int16 { return v.field.Swap(x) }

// Swap atomically stores x as the value and returns the old value.
func (v *Uint16) Swap(x uint16) uint16 { return v.field.Swap(x) }

// Swap atomically stores x as the value and returns the old value.
func (v *Uint32) Swap(x uint32) uint32 { return v.atomicUint32.Swap(x) }

// CompareAndSwap atomically stores new as the value if it is old, and
// reports whether it did.
func (v *Int8) CompareAndSwap(old, new int8) bool { return v.field.CompareAndSwap(old, new) }

// CompareAndSwap atomically stores new as the value if it is old, and
// reports whether it did.
func (v *Uint8) CompareAndSwap(old, new uint8) bool { return v.field.CompareAndSwap(old, new) }

// CompareAndSwap atomically stores new as the value if it is old, and
// reports whether it did.
func (v *Int16) CompareAndSwap(old, new int16) bool { return v.field.CompareAndSwap(old, new) }

// CompareAndSwap atomically stores new as the value if it is old, and
// reports whether it did.
func (v *Uint16) CompareAndSwap(old, new uint16) bool { return v.field.CompareAndSwap(old, new) }

// CompareAndSwap atomically stores new as the value if it is old, and
// reports whether it did.
func (v *Uint32) CompareAndSwap(old, new uint32) bool { return v.atomicUint32.CompareAndSwap(old, new) }

// And atomically ands the value with mask and returns the old value.
func (v *Int8) And(mask int8) int8 { return v.field.And(mask) }

// And atomically ands the value with mask and returns the old value.
func (v *Uint8) And(mask uint8) uint8 { return v.field.And(mask) }

// And atomically ands the value with mask and returns the old value.
func (v *Int16) And(mask int16) int16 { return v.field.And(mask) }

// And atomically ands the value with mask and returns the old value.
func (v *Uint16) And(mask uint16) uint16 { return v.field.And(mask) }

// And atomically ands the value with mask and returns the old value.
func (v *Uint32) And(mask uint32) uint32 { return v.atomicUint32.And(mask) }

// Or atomically ors the value with mask and returns the old value.
func (v *Int8) Or(mask int8) int8 { return v.field.Or(mask) }

// Or atomically ors the value with mask and returns the old value.
func (v *Uint8) Or(mask uint8) uint8 { return v.field.Or(mask) }

// Or atomically ors the value with mask and returns the old value.
func (v *Int16) Or(mask int16) int16 { return v.field.Or(mask) }

// Or atomically ors the value with mask and returns the old value.
func (v *Uint16) Or(mask uint16) uint16 { return v.field.Or(mask) }

// Or atomically ors the value with mask and returns the old value.
func (v *Uint32) Or(mask uint32) uint32 { return v.atomicUint32.Or(mask) }
