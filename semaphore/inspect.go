package semaphore

import (
	"errors"
	"fmt"

	"github.com/ipckit/ipckit/shm"
)

// Inspection
//
// The inspectors below read an object at offset 0 of its own segment's
// payload (the segments of NewMutex, CreateSemaphore, ...), which may be a
// read-only mapping, with the atomic loads its methods make, and nothing
// else: they take no guard, repair nothing, claim no liveness token. They
// are registered with shm for the kinds of those segments, for cmd/ipcs.
// A count read without the guard may be a moment stale against another;
// each is a value some moment had.

// MutexState is what an inspector reads of a [Mutex]: its lock word. It
// is a plain value.
type MutexState struct {
	shm.LockState
}

// SemaphoreState is what an inspector reads of a [Semaphore]. It is a
// plain value.
type SemaphoreState struct {
	Value     uint64 // permits free
	Base      uint64 // permits free plus permits held
	Bounded   bool
	Reclaimed uint64 // permits taken back from dead holders
	Sleepers  uint32 // processes' goroutines asleep in Acquire
	Guard     shm.LockState
	Slots     int            // holder slots
	Holding   []PermitHolder // the slots in use
}

// PermitHolder is a process holding permits of a [Semaphore].
type PermitHolder struct {
	shm.Holder
	Permits uint32
}

// String returns the holder and its permits: "pid 1234 token 0x1f (alive): 2 permits".
func (p PermitHolder) String() string {
	if p.Permits == 1 {
		return fmt.Sprintf("%v: 1 permit", p.Holder)
	}
	return fmt.Sprintf("%v: %d permits", p.Holder, p.Permits)
}

// EventState is what an inspector reads of an [Event]. It is a plain value.
type EventState struct {
	Set  bool   // the flag
	Sets uint32 // Sets that found the flag clear, modulo 2^31
}

// BarrierState is what an inspector reads of a [Barrier]. It is a plain
// value.
type BarrierState struct {
	Parties    int
	Waiting    int    // parties of this generation that arrived and wait
	Generation uint32 // completed rounds, modulo 2^31
	Broken     bool
	Guard      shm.LockState
	Arrived    []shm.Holder // the waiting parties, in arrival order
}

// ConditionState is what an inspector reads of a [Condition]. It is a
// plain value.
type ConditionState struct {
	Mutex    shm.LockState
	Waiters  uint32 // waiters counted in: in Wait, or killed while waiting
	Signals  uint32 // notifications given and not yet taken by a waiter
	Sequence uint32 // the futex word Notify moves, modulo 2^32
}

// LockedState is what an inspector reads of a [Locked]: its Mutex and
// its array. It is a plain value.
type LockedState struct {
	Mutex shm.LockState
	Kind  shm.Kind // the array's kind (shm.ArrayKind of its element type)
	shm.ValuesState
}

// InspectMutex reads the [Mutex] at the start of payload (see
// "Inspection"). Its errors wrap [ErrCorrupt] or os.ErrInvalid.
func InspectMutex(payload []byte) (MutexState, error) {
	if err := fits(payload, MutexSize, "mutex"); err != nil {
		return MutexState{}, err
	}
	ls, err := shm.PeekLockAt(payload)
	return MutexState{ls}, err
}

// InspectSemaphore reads the [Semaphore] at the start of payload (see
// "Inspection"). Its errors wrap [ErrCorrupt].
func InspectSemaphore(payload []byte) (SemaphoreState, error) {
	if err := fits(payload, semHeader, "semaphore"); err != nil {
		return SemaphoreState{}, err
	}
	if m := u32(payload, offSemMagic).Load(); m != semMagic {
		return SemaphoreState{}, fmt.Errorf("semaphore: inspect: semaphore magic %#x, want %#x: %w", m, semMagic, ErrCorrupt)
	}
	n := int(u32(payload, offSemNSlots).Load())
	if n < 1 || n > maxHolders {
		return SemaphoreState{}, fmt.Errorf("semaphore: inspect: %d holder slots, want 1 to %d: %w", n, maxHolders, ErrCorrupt)
	}
	if err := fits(payload, semHeader+slotSize*n, fmt.Sprintf("semaphore of %d holder slots", n)); err != nil {
		return SemaphoreState{}, err
	}
	st := SemaphoreState{
		Value: u64(payload, offSemAvail).Load(), Base: u64(payload, offSemBase).Load(),
		Bounded:   u32(payload, offSemFlags).Load()&flagBounded != 0,
		Reclaimed: u64(payload, offSemReclaimed).Load(), Sleepers: u32(payload, offSemSleepers).Load(),
		Slots: n,
	}
	var err error
	if st.Guard, err = shm.PeekLockAt(payload[offSemGuard:]); err != nil {
		return st, err
	}
	for i := range n {
		off := semHeader + slotSize*i
		// The token first, as a reclaim reads it: a slot is live only with one.
		tok := u64(payload, off+offSlotToken).Load()
		if tok == 0 {
			continue
		}
		st.Holding = append(st.Holding, PermitHolder{shm.HolderOf(tok), u32(payload, off+offSlotCount).Load()})
	}
	return st, nil
}

// InspectEvent reads the [Event] at the start of payload (see
// "Inspection").
func InspectEvent(payload []byte) (EventState, error) {
	if err := fits(payload, EventSize, "event"); err != nil {
		return EventState{}, err
	}
	w := u32(payload, offEventWord).Load()
	return EventState{Set: w&eventFlag != 0, Sets: w / eventSets}, nil
}

// InspectBarrier reads the [Barrier] at the start of payload (see
// "Inspection"). Its errors wrap [ErrCorrupt].
func InspectBarrier(payload []byte) (BarrierState, error) {
	if err := fits(payload, barHeader, "barrier"); err != nil {
		return BarrierState{}, err
	}
	if m := u32(payload, offBarMagic).Load(); m != barMagic {
		return BarrierState{}, fmt.Errorf("semaphore: inspect: barrier magic %#x, want %#x: %w", m, barMagic, ErrCorrupt)
	}
	n := int(u32(payload, offBarParties).Load())
	if n < 1 || n > maxParties {
		return BarrierState{}, fmt.Errorf("semaphore: inspect: %d parties in a barrier, want 1 to %d: %w", n, maxParties, ErrCorrupt)
	}
	if err := fits(payload, BarrierSize(n), fmt.Sprintf("barrier of %d parties", n)); err != nil {
		return BarrierState{}, err
	}
	gen := u32(payload, offBarGen).Load()
	st := BarrierState{
		Parties: n, Generation: gen / genIncrement, Broken: gen&brokenBit != 0,
		Waiting: int(u32(payload, offBarArrived).Load()),
	}
	var err error
	if st.Guard, err = shm.PeekLockAt(payload[offBarGuard:]); err != nil {
		return st, err
	}
	for i := range min(st.Waiting, n) {
		if tok := u64(payload, barHeader+barSlotSize*i).Load(); tok != 0 {
			st.Arrived = append(st.Arrived, shm.HolderOf(tok))
		}
	}
	return st, nil
}

// InspectCondition reads the [Condition] at the start of payload (see
// "Inspection"). Its errors wrap [ErrCorrupt].
func InspectCondition(payload []byte) (ConditionState, error) {
	if err := fits(payload, ConditionSize, "condition"); err != nil {
		return ConditionState{}, err
	}
	var st ConditionState
	st.Waiters, st.Signals = splitCounts(u64(payload, offCondCounts).Load())
	st.Sequence = u32(payload, offCondSeq).Load()
	var err error
	if st.Mutex, err = shm.PeekLockAt(payload[offCondMutex:]); err != nil {
		return st, err
	}
	if st.Signals > st.Waiters {
		return st, fmt.Errorf("semaphore: inspect: condition with %d signals for %d waiters: %w", st.Signals, st.Waiters, ErrCorrupt)
	}
	return st, nil
}

// InspectLocked reads the [Locked] at the start of payload (see
// "Inspection"): its Mutex, and the first elements of its array. Its
// errors wrap [ErrCorrupt].
func InspectLocked(payload []byte) (LockedState, error) {
	if err := fits(payload, lockedHeader, "locked array"); err != nil {
		return LockedState{}, err
	}
	st := LockedState{Kind: shm.Kind(u32(payload, offLockedKind).Load())}
	n := int(u32(payload, offLockedLen).Load())
	if !arrayKinds[st.Kind] || validLockedLen(n) != nil {
		return st, fmt.Errorf("semaphore: inspect: locked array of %d elements of kind %d: %w", n, uint32(st.Kind), ErrCorrupt)
	}
	var err error
	if st.Mutex, err = shm.PeekLockAt(payload[offLockedMutex:]); err != nil {
		return st, err
	}
	if st.ValuesState, err = shm.InspectArray(st.Kind, payload[lockedHeader:], n); err != nil {
		return st, fmt.Errorf("semaphore: inspect: locked %v of %d elements: %w", st.Kind, n, errors.Join(err, ErrCorrupt))
	}
	return st, nil
}

// fits reports an error wrapping ErrCorrupt unless payload, a segment's
// payload, holds size bytes of what.
func fits(payload []byte, size int, what string) error {
	if len(payload) < size || !aligned8(payload) {
		return fmt.Errorf("semaphore: inspect: a %d-byte payload cannot hold a %s (%d bytes): %w", len(payload), what, size, ErrCorrupt)
	}
	return nil
}

// Holders returns the mutex's holder, if any.
func (s MutexState) Holders() []shm.Holder { return lockHolders(s.LockState) }

// Counters returns nil: a mutex counts nothing.
func (MutexState) Counters() map[string]uint64 { return nil }

// Holders returns the processes holding permits, and the guard's holder.
func (s SemaphoreState) Holders() []shm.Holder {
	hs := lockHolders(s.Guard)
	for _, p := range s.Holding {
		hs = append(hs, p.Holder)
	}
	return hs
}

// Counters returns the permits reclaimed from dead holders.
func (s SemaphoreState) Counters() map[string]uint64 {
	return map[string]uint64{"Reclaimed": s.Reclaimed}
}

// Holders returns nil: an Event is owned by nobody.
func (EventState) Holders() []shm.Holder { return nil }

// Counters returns nil: Sets wraps around.
func (EventState) Counters() map[string]uint64 { return nil }

// Holders returns the waiting parties and the guard's holder.
func (s BarrierState) Holders() []shm.Holder { return append(lockHolders(s.Guard), s.Arrived...) }

// Counters returns nil: Generation wraps around.
func (BarrierState) Counters() map[string]uint64 { return nil }

// Holders returns the Mutex's holder, if any: waiters are not recorded.
func (s ConditionState) Holders() []shm.Holder { return lockHolders(s.Mutex) }

// Counters returns nil: Sequence wraps around.
func (ConditionState) Counters() map[string]uint64 { return nil }

// Holders returns the Mutex's holder, if any.
func (s LockedState) Holders() []shm.Holder { return lockHolders(s.Mutex) }

// Counters returns nil: the elements may go down as well as up.
func (LockedState) Counters() map[string]uint64 { return nil }

func lockHolders(l shm.LockState) []shm.Holder {
	if l.Holder == nil {
		return nil
	}
	return []shm.Holder{*l.Holder}
}

func init() {
	shm.RegisterInspector(shm.KindMutex, func(p []byte) (shm.Report, error) { return InspectMutex(p) })
	shm.RegisterInspector(shm.KindSemaphore, func(p []byte) (shm.Report, error) { return InspectSemaphore(p) })
	shm.RegisterInspector(shm.KindEvent, func(p []byte) (shm.Report, error) { return InspectEvent(p) })
	shm.RegisterInspector(shm.KindBarrier, func(p []byte) (shm.Report, error) { return InspectBarrier(p) })
	shm.RegisterInspector(shm.KindCondition, func(p []byte) (shm.Report, error) { return InspectCondition(p) })
	shm.RegisterInspector(shm.KindLocked, func(p []byte) (shm.Report, error) { return InspectLocked(p) })
}
