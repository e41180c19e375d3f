package semaphore

import (
	"context"
	"fmt"
	"math"
	"os"
	"sync/atomic"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// Counting semaphore with holder records
//
// A permit must come back when the process holding it dies, so the
// semaphore records who holds what: a table of slots {token, count}, where
// token is the holder's liveness token (internal/liveness: valid in every
// PID namespace). Every change happens under an internal robust lock (the
// guard), and every change is a store of one word, so a process killed
// halfway leaves a state that the next guard holder can repair: when it
// takes the guard over from a dead holder, it frees the slots of dead
// processes and half-claimed slots, and recomputes avail = base - the
// counts of the live slots (reclaim). A slot is freed only when its holder
// is proven dead (liveness.Dead, or a token that names nobody at all):
// permits held by a process whose liveness cannot be proven stay held.
//
// Waiters sleep on seq, which every Release and every reclaim that frees
// permits bumps (robust.WaitValue). A waiter follows the processes holding
// permits: the kernel wakes it when one dies (robust's "Watching
// holders"), and it then reclaims; it also looks before its first sleep
// and once more before it gives up on a deadline, so a permit held by a
// process killed with SIGKILL comes back to a waiter with any deadline,
// however short. The waiter that took permits back from a dead holder
// gets [ErrOwnerDead] with its permit (the dead holder's work may be half
// done), like the taker-over of a Mutex.
//
// Release takes the permit back from the caller's own slot; in a bounded
// semaphore, a process that holds none returns one held by another process
// (a permit handed on with the work), and a Release that no slot accounts for
// is [ErrTooManyReleases]. In an unbounded semaphore it adds a permit.
//
// Layout: SemaphoreSize bytes at an 8-byte aligned offset. Every field is
// read and written with atomic operations; "the guard holder" is whoever
// holds the guard at the time, and "the creator" is InitSemaphoreAt, which
// runs before anyone else may use the memory (CreateSemaphore runs it
// before the segment is named: shm's Kind.CreateInit). TestLayout pins the
// offsets. semMagic names the layout: it changed when the guard and the
// slots moved from pid and start time to liveness tokens.
//
// Ordering (the whole package). Every access to a shared word of a
// Semaphore, Barrier, Mutex, Event or FileMutex record is atomic (the
// casts are in unsafe.go); no plain load relies on x86's store order. The
// only plain stores are the creator's clear in InitSemaphoreAt and
// InitBarrierAt, published by the magic, stored atomically and last, which
// attach loads first. On a weak memory model (arm64) these would break if
// they were plain:
//
//   - the guards and Mutex (internal/robust: a CAS to lock, a CAS or a
//     release store to unlock): see its "Memory ordering". The Mutex's
//     user data would be read stale; the slots and counts below rely on
//     the guard the same way.
//   - take's claim of a slot (count, then the token last) and slot.free
//     (the token first, then the count): a reclaim after a takeover could see
//     a token with a stale count, and lose or invent permits.
//   - Acquire's load of seq and add to sleepers under the guard, against
//     Release's add to seq under the guard and its load of sleepers after
//     unlocking: the guard orders the two critical sections, and the
//     futex compares seq, so a sleeper does not sleep through a Release.
//   - Barrier.Wait's last arrival stores gen after the guard chain through
//     every party; the waiters load gen: a party could leave without
//     seeing the others' writes before Wait (Python's Barrier promises
//     them).
//   - Event.Set's CAS and Wait's loads: data written before Set could be
//     missing after Wait returns.
//   - FileMutex's funlock: flock(LOCK_UN), then an atomic add to the
//     sleepers word (a full fence, which a system call is not) before it
//     looks for sleepers; the data it guards is ordered by flock itself.
//
// Emulation cannot check this: qemu-user on x86 leaves Go's sequentially
// consistent Store then Load of another word unordered (it emits STLR as
// a fence then a store, LDAR as a load then a fence; internal/release's
// TestStoreBuffering), so .ci/arm64 skips the tests whose verdict rests on
// ordering.
const (
	// offSemGuard is the guard: a robust lock (robust.Size bytes: the
	// lock word at 0, its sleepers word at 8), written and read as
	// internal/robust's "Robust lock" says.
	offSemGuard = 0
	// offSemSeq (uint32) is the futex word sleepers wait on. Written (Add) by
	// the guard holder in Release and in a reclaim that frees permits; read
	// by a sleeper before it sleeps and after it wakes.
	offSemSeq = 16
	// offSemSleepers (uint32) counts sleepers. Written (Add) by each sleeper
	// around its sleep (the Add before it under the guard); read by Release
	// and reclaim: whether to wake.
	offSemSleepers = 20
	// offSemMagic (uint32) holds semMagic. Written by the creator, once;
	// read by attach.
	offSemMagic = 24
	// offSemFlags (uint32): bit 0 is flagBounded. Written by the creator,
	// once; read by the guard holder in Release.
	offSemFlags = 28
	// offSemBase (uint64) is the permits free plus the permits held.
	// Written by the creator, and by the guard holder when an unbounded
	// Release adds a permit; read by the guard holder.
	offSemBase = 32
	// offSemAvail (uint64) is the permits free. Written by the creator and
	// the guard holder; read by the guard holder, and by Value without it.
	offSemAvail = 40
	// offSemNSlots (uint32) is the number of holder slots. Written by the
	// creator, once; read by attach, which keeps it in a local (a later
	// change is never seen). Bytes 52 to 55 are padding, always 0.
	offSemNSlots = 48
	// offSemReclaimed (uint64) counts the permits taken back from dead
	// holders. Written (Add) by the guard holder; read by Reclaimed.
	offSemReclaimed = 56
	// semHeader is where the holder slots start: slot i is slotSize bytes
	// at semHeader+slotSize*i.
	semHeader = 64
)

// A holder slot: written only by the guard holder (claimed count first and
// token last, freed token first, so a slot is never live half-written) and
// read by the guard holder; a waiter also loads the tokens without the
// guard, to follow the holders. Atomic.
const (
	offSlotToken = 0  // uint64: the holder's liveness token; 0 means free
	offSlotCount = 8  // uint32: the permits it holds. Bytes 12 to 15: 0
	slotSize     = 16 // bytes a slot takes
)

const (
	semMagic     = 0x32414d53 // "SMA2"; "SEMA" (0x414d4553) was the pid layout
	maxHolders   = 1 << 16
	defHolders   = 64
	flagBounded  = 1
	maxSemaphore = math.MaxInt32
)

// SemaphoreOptions configures a new [Semaphore]. A nil *SemaphoreOptions,
// like the zero value, means the defaults. [SemaphoreSize] reads Holders
// only, as the other fields do not change the size.
//
// A constructor reads the options during the call and keeps no reference
// to them: they may be reused or changed afterwards, but not while a
// constructor reads them.
type SemaphoreOptions struct {
	// Bounded makes Release beyond the initial value an error, like
	// Python's BoundedSemaphore.
	Bounded bool
	// Holders is how many processes may hold permits at once: 1 to 65536,
	// or 0 for the default, 64.
	Holders int
	// Mode is the permission of a named semaphore's file (default 0600). It
	// applies to [CreateSemaphore] only: an anonymous semaphore, or one
	// placed in a segment the caller made, has no file of its own.
	Mode os.FileMode
}

// check returns the number of holder slots opts asks for, or an error if it
// or value is out of range.
func (o *SemaphoreOptions) check(value int) (int, error) {
	n := defHolders
	if o != nil && o.Holders != 0 {
		n = o.Holders
	}
	if n < 1 || n > maxHolders {
		return 0, fmt.Errorf("semaphore: %d holders, want 1 to %d (or 0 for %d): %w", n, maxHolders, defHolders, os.ErrInvalid)
	}
	if value < 0 || value > maxSemaphore {
		return 0, fmt.Errorf("semaphore: value %d, want 0 to %d: %w", value, maxSemaphore, os.ErrInvalid)
	}
	return n, nil
}

// SemaphoreSize returns the bytes a Semaphore made with opts takes, or 0 if
// opts.Holders is out of range (which the constructors refuse).
func SemaphoreSize(opts *SemaphoreOptions) int {
	n, err := opts.check(0)
	if err != nil {
		return 0
	}
	return semHeader + slotSize*n
}

// Semaphore is a counting semaphore in shared memory, like Python's
// multiprocessing.Semaphore (or BoundedSemaphore, see
// [SemaphoreOptions.Bounded]). Permits held by a process that dies come back.
//
// A *Semaphore is safe for concurrent use by goroutines and processes (Close
// aside: see the package doc, "Closing"), and may be passed to a child
// process (see the package doc, "Sharing"). A Semaphore must not be copied.
// The zero Semaphore is not usable: get one from [NewSemaphore],
// [CreateSemaphore], [OpenSemaphore], [InitSemaphoreAt] or [SemaphoreAt].
// Zeroed shared memory does not hold a Semaphore ([SemaphoreAt] refuses it
// with [ErrCorrupt]). No method returns a slice.
type Semaphore struct {
	object
	guard                *robust.Lock
	seq, sleepers, flags *atomic.Uint32
	base, avail          *atomic.Uint64
	reclaimed            *atomic.Uint64
	nslots               int
}

// NewSemaphore returns a Semaphore with value permits (0 to 2^31-1) in an
// anonymous segment of its own.
func NewSemaphore(value int, opts *SemaphoreOptions) (*Semaphore, error) {
	if _, err := opts.check(value); err != nil {
		return nil, err
	}
	return own(initSemaphore(value, opts))(shm.KindSemaphore.CreateAnonymous(SemaphoreSize(opts)))
}

// CreateSemaphore returns a Semaphore with value permits (0 to 2^31-1) in a
// new named segment; see [shm.Create] for the name.
func CreateSemaphore(name string, value int, opts *SemaphoreOptions) (*Semaphore, error) {
	if _, err := opts.check(value); err != nil {
		return nil, err
	}
	var so *shm.Options
	if opts != nil {
		so = &shm.Options{Mode: opts.Mode}
	}
	return create(shm.KindSemaphore, name, SemaphoreSize(opts), so, initSemaphore(value, opts))
}

// initSemaphore returns InitSemaphoreAt with value and opts, for own and
// create.
func initSemaphore(value int, opts *SemaphoreOptions) func(*shm.Segment, int) (*Semaphore, *object, error) {
	return func(seg *shm.Segment, off int) (*Semaphore, *object, error) {
		s, err := InitSemaphoreAt(seg, off, value, opts)
		if err != nil {
			return nil, nil, err
		}
		return s, &s.object, nil
	}
}

// OpenSemaphore opens the Semaphore in the named segment made by
// [CreateSemaphore].
func OpenSemaphore(name string) (*Semaphore, error) {
	return own(semaphoreAt)(shm.KindSemaphore.Open(name))
}

// InitSemaphoreAt makes a Semaphore with value permits (0 to 2^31-1) at off
// (a multiple of 8) in seg.Bytes(), over whatever was there;
// [SemaphoreSize] bytes must fit. Nobody may use the memory meanwhile. The
// Semaphore does not own seg.
func InitSemaphoreAt(seg *shm.Segment, off, value int, opts *SemaphoreOptions) (*Semaphore, error) {
	n, err := opts.check(value)
	if err != nil {
		return nil, err
	}
	s := new(Semaphore)
	if err := s.place(seg, off, semHeader+slotSize*n); err != nil {
		return nil, err
	}
	clear(s.mem)
	if err := s.words(n); err != nil {
		return nil, err
	}
	if opts != nil && opts.Bounded {
		s.flags.Store(flagBounded)
	}
	s.base.Store(uint64(value))
	s.avail.Store(uint64(value))
	u32(s.mem, offSemNSlots).Store(uint32(n))
	u32(s.mem, offSemMagic).Store(semMagic)
	return s, nil
}

// SemaphoreAt attaches to the Semaphore at off in seg.Bytes(), made by
// [InitSemaphoreAt]. It does not own seg.
func SemaphoreAt(seg *shm.Segment, off int) (*Semaphore, error) {
	s, _, err := semaphoreAt(seg, off)
	return s, err
}

func semaphoreAt(seg *shm.Segment, off int) (*Semaphore, *object, error) {
	s := new(Semaphore)
	if err := s.attach(seg, off); err != nil {
		return nil, nil, err
	}
	return s, &s.object, nil
}

func (s *Semaphore) attach(seg *shm.Segment, off int) error {
	if err := s.place(seg, off, semHeader); err != nil {
		return err
	}
	if m := u32(s.mem, offSemMagic).Load(); m != semMagic {
		return fmt.Errorf("semaphore: semaphore magic %#x, want %#x: %w", m, semMagic, ErrCorrupt)
	}
	n := int(u32(s.mem, offSemNSlots).Load())
	if n < 1 || n > maxHolders {
		return fmt.Errorf("semaphore: %d holder slots, want 1 to %d: %w", n, maxHolders, ErrCorrupt)
	}
	if err := s.extend(semHeader+slotSize*n, fmt.Sprintf("%d holder slots", n)); err != nil {
		return err
	}
	return s.words(n)
}

func (s *Semaphore) words(n int) (err error) {
	if s.guard, err = s.newGuard(s.mem[offSemGuard:]); err != nil {
		return err
	}
	s.seq, s.sleepers, s.flags = u32(s.mem, offSemSeq), u32(s.mem, offSemSleepers), u32(s.mem, offSemFlags)
	s.base, s.avail, s.reclaimed = u64(s.mem, offSemBase), u64(s.mem, offSemAvail), u64(s.mem, offSemReclaimed)
	s.nslots = n
	return nil
}

type slot struct {
	token *atomic.Uint64
	count *atomic.Uint32
}

func (s *Semaphore) slot(i int) slot {
	off := semHeader + slotSize*i
	return slot{u64(s.mem, off+offSlotToken), u32(s.mem, off+offSlotCount)}
}

// free empties sl: the token first, so the slot is never live with a
// count that is not its holder's.
func (sl slot) free() {
	sl.token.Store(0)
	sl.count.Store(0)
}

// self is this process's liveness token: a Semaphore's guard has claimed
// it already (attach fails without one), so it never fails here.
func self() liveness.Token {
	t, _ := liveness.Self()
	return t
}

// Acquire takes a permit, waiting until one is free or ctx is done; then it
// returns ctx.Err() and the semaphore is as it was. If this call took back
// permits from a holder that died, it returns [ErrOwnerDead] with the
// permit taken: the dead holder's work may be half done. It looks for dead
// holders before it gives up, so a permit whose holder died comes back to
// it however short its deadline.
func (s *Semaphore) Acquire(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	told := false
	reclaim := func() { told = s.reclaim() > 0 || told }
	// The waiter's look at the holders (see the design note): it must
	// take the guard even after ctx is done, so it waits for it on its own
	// (bounded) clock.
	opts := &robust.WaitOptions{
		Closer: &s.closer,
		Watch: func() bool {
			if lockGuard(s.guard, reclaim) != nil {
				return false
			}
			freed := s.reclaim()
			s.guard.Unlock()
			told = freed > 0 || told
			return freed > 0
		},
		Holders: s.holders,
	}
	for first := true; ; first = false {
		if s.closed() {
			return os.ErrClosed
		}
		if err := lockRepair(ctx, s.guard, reclaim); err != nil {
			return err
		}
		if first && s.avail.Load() == 0 {
			reclaim()
		}
		if s.avail.Load() > 0 {
			err := s.take()
			s.guard.Unlock()
			if err == nil && told {
				err = ErrOwnerDead
			}
			return err
		}
		seq := s.seq.Load()
		s.sleepers.Add(1)
		s.guard.Unlock()
		err := robust.WaitValue(ctx, s.seq, seq, opts)
		s.sleepers.Add(^uint32(0))
		if err != nil {
			// A Release may have spent its one wake on this wait, which
			// is giving up: pass it on.
			if s.seq.Load() != seq {
				futex.Wake(addr(s.seq), 1)
			}
			return err
		}
	}
}

// holders returns the tokens of the processes holding permits, for a
// waiter to follow. It reads without the guard (a snapshot).
func (s *Semaphore) holders() []liveness.Token {
	var toks []liveness.Token
	for i := range s.nslots {
		sl := s.slot(i)
		if t := liveness.Token(sl.token.Load()); t != 0 && sl.count.Load() != 0 {
			toks = append(toks, t)
		}
	}
	return toks
}

// TryAcquire takes a permit if one is free now (reclaiming those of dead
// holders first if none is), and reports whether it did.
func (s *Semaphore) TryAcquire() bool {
	if s.closed() {
		return false
	}
	// Wait for the guard only briefly: its holders never block while they
	// hold it, so a guard held for long is a stopped process or corrupt
	// memory, and TryAcquire does not wait for either.
	if err := lockGuard(s.guard, s.repair); err != nil {
		return false
	}
	defer s.guard.Unlock()
	if s.avail.Load() == 0 {
		s.reclaim()
	}
	return s.avail.Load() > 0 && s.take() == nil
}

// take records one more permit for this process; the caller holds the
// guard and saw avail > 0.
func (s *Semaphore) take() error {
	me := uint64(self())
	free := -1
	for i := range s.nslots {
		sl := s.slot(i)
		if sl.token.Load() == me {
			sl.count.Add(1)
			s.avail.Add(^uint64(0))
			return nil
		}
		if free < 0 && sl.token.Load() == 0 {
			free = i
		}
	}
	if free < 0 {
		return ErrTooManyHolders
	}
	// Claim the slot: the token last, so a slot is never live half-written.
	sl := s.slot(free)
	sl.count.Store(1)
	sl.token.Store(me)
	s.avail.Add(^uint64(0))
	return nil
}

// Release returns a permit; see the design note for whose.
func (s *Semaphore) Release() error {
	if s.closed() {
		return os.ErrClosed
	}
	if err := lockRepair(context.Background(), s.guard, s.repair); err != nil {
		return err
	}
	err := s.give()
	if err == nil {
		s.seq.Add(1)
	}
	s.guard.Unlock()
	if err == nil && s.sleepers.Load() > 0 {
		futex.Wake(addr(s.seq), 1)
	}
	return err
}

func (s *Semaphore) give() error {
	me := uint64(self())
	other := -1
	for i := range s.nslots {
		sl := s.slot(i)
		t := sl.token.Load()
		if t == 0 || sl.count.Load() == 0 {
			continue
		}
		if t == me {
			return s.giveFrom(sl)
		}
		if other < 0 {
			other = i
		}
	}
	if s.flags.Load()&flagBounded != 0 {
		if other < 0 {
			return ErrTooManyReleases
		}
		return s.giveFrom(s.slot(other))
	}
	if s.base.Load() >= maxSemaphore {
		return ErrTooManyReleases
	}
	s.base.Add(1)
	s.avail.Add(1)
	return nil
}

func (s *Semaphore) giveFrom(sl slot) error {
	if sl.count.Add(^uint32(0)) == 0 {
		sl.free()
	}
	s.avail.Add(1)
	return nil
}

// reclaim frees the slots of dead holders and recomputes avail; the caller
// holds the guard. It wakes sleepers if permits came back, and returns how
// many did. A slot whose holder may be alive (Alive or Unknown) is never
// freed; one whose token names nobody (corrupt memory) is.
func (s *Semaphore) reclaim() int {
	var held uint64
	freed := 0
	for i := range s.nslots {
		sl := s.slot(i)
		t := liveness.Token(sl.token.Load())
		switch {
		case t == 0:
			if sl.count.Load() != 0 {
				sl.free() // claimed or freed halfway by a process that died
			}
		case !t.Valid() || liveness.Check(t) == liveness.Dead:
			freed += int(sl.count.Load())
			sl.free()
		default:
			held += uint64(sl.count.Load())
		}
	}
	base := s.base.Load()
	avail := uint64(0)
	if base > held {
		avail = base - held
	}
	s.avail.Store(avail)
	if freed > 0 {
		s.reclaimed.Add(uint64(freed))
		s.seq.Add(1)
		if s.sleepers.Load() > 0 {
			futex.Wake(addr(s.seq), 0)
		}
	}
	return freed
}

// repair runs after the guard's holder died: its change may be half-done.
func (s *Semaphore) repair() { s.reclaim() }

// Reclaimed returns how many permits have been taken back from processes
// that died holding them, over the semaphore's life (0 after Close).
func (s *Semaphore) Reclaimed() int {
	if s.closed() {
		return 0
	}
	return int(min(s.reclaimed.Load(), math.MaxInt32))
}

// Value returns the number of free permits at some recent moment (0 after
// Close).
func (s *Semaphore) Value() int {
	if s.closed() {
		return 0
	}
	return int(min(s.avail.Load(), math.MaxInt32))
}

// Segment returns the segment s lives in.
func (s *Semaphore) Segment() *shm.Segment { return s.seg }

// Offset returns s's offset in [shm.Segment.Bytes].
func (s *Semaphore) Offset() int { return s.off }

// Close releases the Semaphore's own segment, if it made or opened one, and
// returns [os.ErrClosed] to this process's calls waiting in Acquire. Permits
// this process holds stay held. It is safe to call twice.
func (s *Semaphore) Close() error { return s.close(s.seq, s.guard.Sleepers()) }

// GobEncode encodes a handle to s; see the package doc.
func (s *Semaphore) GobEncode() ([]byte, error) { return s.encode() }

// GobDecode attaches s, which must be new, to the Semaphore a handle names.
func (s *Semaphore) GobDecode(b []byte) error {
	return decode(b, func(seg *shm.Segment, off int) (*object, error) {
		return &s.object, s.attach(seg, off)
	})
}
