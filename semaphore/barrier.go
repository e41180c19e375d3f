package semaphore

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// Barrier
//
// Arrivals are counted under an internal robust lock (the guard), and each
// arriving party records its liveness token (internal/liveness) in the
// slot of its arrival index. The last party to arrive resets the count and
// bumps the generation; the others sleep on the generation word
// (robust.WaitValue). Bit 0 of that word says the barrier is broken;
// breaking sets it and wakes everyone. A waiter returns success when the
// generation moved past the one it arrived in, and ErrBroken when its own
// generation became broken. Broken lasts until Reset, which also ends a
// generation in progress: it sets the generation's bit in the outcomes
// word, so that its waiters, finding the generation moved, tell a reset
// (ErrBroken) from a completion.
//
// The action. The last party to arrive, if its handle has an action, marks
// the generation full (arrived = parties), releases the guard, runs the
// action, and takes the guard again to complete the generation, unless it
// was broken or reset meanwhile. A party arriving at a full generation
// waits for the next one. The runner's token is in the last slot, so the
// waiters follow it like the others.
//
// A party breaks the barrier when its context is done while it waits, when
// it calls Abort, or when it dies. Waiters follow the parties that arrived
// before them: the kernel wakes them when one dies (robust's "Watching
// holders"), a slow timer re-checks, and a waiter checks them once more
// before it gives up on a deadline, so a dead party is reported as
// ErrBroken, never as a timeout. A party is dead only when proven so
// (liveness.Dead, or a token that names nobody: corrupt memory); one whose
// liveness cannot be proven is waited for. A guard holder that died is
// found by the next guard holder, which breaks the barrier.
//
// Layout: BarrierSize(parties) bytes at an 8-byte aligned offset. Every
// field is read and written with atomic operations; "the guard holder" is
// whoever holds the guard at the time, and "the creator" is InitBarrierAt,
// which runs before anyone else may use the memory (CreateBarrier runs it
// before the segment is named: shm's Kind.CreateInit). Memory ordering:
// see "Ordering" in semaphore.go. TestLayout pins the offsets. barMagic names the layout: it changed when the guard and the
// slots moved from pid and start time to liveness tokens.
const (
	// offBarGuard is the guard: a robust lock (robust.Size bytes: the
	// lock word at 0, its sleepers word at 8), written and read as
	// internal/robust's "Robust lock" says.
	offBarGuard = 0
	// offBarGen (uint32) is the futex word waiters sleep on: the generation
	// times genIncrement, plus brokenBit. Written by the guard holder (the
	// last arrival adds genIncrement; breaking sets brokenBit), and by a
	// party giving up without the guard (CAS that sets brokenBit); read by
	// every party.
	offBarGen = 16
	// offBarParties (uint32) is the number of parties. Written by the
	// creator, once; read by attach, which keeps it in a local (a later
	// change is never seen).
	offBarParties = 20
	// offBarArrived (uint32) counts the parties of this generation that
	// arrived. Written and read by the guard holder.
	offBarArrived = 24
	// offBarMagic (uint32) holds barMagic. Written by the creator, once;
	// read by attach.
	offBarMagic = 28
	// offBarOutcomes (uint64) records how generations ended: bit n%64 is
	// set when generation n (gen>>1) was reset, clear when it completed.
	// Written by the guard holder (the last arrival clears the bit, Reset
	// sets it) before it stores gen; read by waiters after they load gen
	// and find it moved. A waiter that wakes only after 64 more
	// generations ended may read a later generation's bit.
	offBarOutcomes = 32
	// barHeader is where the arrival slots start: slot i, barSlotSize bytes
	// at barHeader+barSlotSize*i, is the uint64 liveness token of the party
	// that arrived i-th (the last one's while it runs the action). Written
	// by that party under the guard (and zeroed by the last arrival and by
	// Reset); read by the guard holder checking liveness, and by waiters
	// without the guard, to follow the parties.
	barHeader = 40
	// barSlotSize is the bytes an arrival slot takes.
	barSlotSize = 8
)

const (
	barMagic     = 0x33524142 // "BAR3"; "BAR2" had no outcomes word, "BARR" (0x52524142) was the pid layout
	maxParties   = 1 << 16
	brokenBit    = 1
	genIncrement = 2
)

// BarrierSize returns the bytes a Barrier for parties parties takes.
func BarrierSize(parties int) int { return barHeader + barSlotSize*parties }

// validParties returns an error if a Barrier cannot have parties parties.
func validParties(parties int) error {
	if parties < 1 || parties > maxParties {
		return fmt.Errorf("semaphore: %d parties, want 1 to %d: %w", parties, maxParties, os.ErrInvalid)
	}
	return nil
}

// Barrier makes a fixed number of parties, in any processes, wait for each
// other, like Python's multiprocessing.Barrier.
//
// A *Barrier is safe for concurrent use by goroutines and processes (Close
// aside: see the package doc, "Closing"), and may be passed to a child
// process (see the package doc, "Sharing"). A Barrier must not be copied.
// The zero Barrier is not usable: get one from [NewBarrier],
// [CreateBarrier], [OpenBarrier], [InitBarrierAt] or [BarrierAt]. Zeroed
// shared memory does not hold a Barrier ([BarrierAt] refuses it with
// [ErrCorrupt]). No method returns a slice.
type Barrier struct {
	object
	guard       *robust.Lock
	gen, arrive *atomic.Uint32
	outcomes    *atomic.Uint64
	parties     int
	action      atomic.Pointer[func() error] // this handle's, process-local
}

// NewBarrier returns a Barrier for parties parties (1 to 65536) in an
// anonymous segment of its own.
func NewBarrier(parties int) (*Barrier, error) {
	if err := validParties(parties); err != nil {
		return nil, err
	}
	return own(initBarrier(parties))(shm.KindBarrier.CreateAnonymous(BarrierSize(parties)))
}

// CreateBarrier returns a Barrier for parties parties (1 to 65536) in a new
// named segment; see [shm.Create] for the name and for opts (nil for the
// defaults).
func CreateBarrier(name string, parties int, opts *shm.Options) (*Barrier, error) {
	if err := validParties(parties); err != nil {
		return nil, err
	}
	return create(shm.KindBarrier, name, BarrierSize(parties), opts, initBarrier(parties))
}

// initBarrier returns InitBarrierAt with parties, for own and create.
func initBarrier(parties int) func(*shm.Segment, int) (*Barrier, *object, error) {
	return func(seg *shm.Segment, off int) (*Barrier, *object, error) {
		b, err := InitBarrierAt(seg, off, parties)
		if err != nil {
			return nil, nil, err
		}
		return b, &b.object, nil
	}
}

// OpenBarrier opens the Barrier in the named segment made by [CreateBarrier].
func OpenBarrier(name string) (*Barrier, error) {
	return own(barrierAt)(shm.KindBarrier.Open(name))
}

// InitBarrierAt makes a Barrier for parties parties (1 to 65536) at off (a
// multiple of 8) in seg.Bytes(), over whatever was there; [BarrierSize]
// bytes must fit. Nobody may use the memory meanwhile. The Barrier does not
// own seg.
func InitBarrierAt(seg *shm.Segment, off, parties int) (*Barrier, error) {
	if err := validParties(parties); err != nil {
		return nil, err
	}
	b := new(Barrier)
	if err := b.place(seg, off, BarrierSize(parties)); err != nil {
		return nil, err
	}
	clear(b.mem)
	u32(b.mem, offBarParties).Store(uint32(parties))
	u32(b.mem, offBarMagic).Store(barMagic)
	if err := b.words(parties); err != nil {
		return nil, err
	}
	return b, nil
}

// BarrierAt attaches to the Barrier at off in seg.Bytes(), made by
// [InitBarrierAt]. It does not own seg.
func BarrierAt(seg *shm.Segment, off int) (*Barrier, error) {
	b, _, err := barrierAt(seg, off)
	return b, err
}

func barrierAt(seg *shm.Segment, off int) (*Barrier, *object, error) {
	b := new(Barrier)
	if err := b.attach(seg, off); err != nil {
		return nil, nil, err
	}
	return b, &b.object, nil
}

func (b *Barrier) attach(seg *shm.Segment, off int) error {
	if err := b.place(seg, off, barHeader); err != nil {
		return err
	}
	if m := u32(b.mem, offBarMagic).Load(); m != barMagic {
		return fmt.Errorf("semaphore: barrier magic %#x, want %#x: %w", m, barMagic, ErrCorrupt)
	}
	n := int(u32(b.mem, offBarParties).Load())
	if n < 1 || n > maxParties {
		return fmt.Errorf("semaphore: %d parties in a barrier, want 1 to %d: %w", n, maxParties, ErrCorrupt)
	}
	if err := b.extend(BarrierSize(n), fmt.Sprintf("%d parties", n)); err != nil {
		return err
	}
	return b.words(n)
}

func (b *Barrier) words(n int) (err error) {
	if b.guard, err = b.newGuard(b.mem[offBarGuard:]); err != nil {
		return err
	}
	b.gen, b.arrive = u32(b.mem, offBarGen), u32(b.mem, offBarArrived)
	b.outcomes = u64(b.mem, offBarOutcomes)
	b.parties = n
	return nil
}

// Parties returns the number of parties the barrier waits for.
func (b *Barrier) Parties() int { return b.parties }

func (b *Barrier) slot(i int) *atomic.Uint64 { return u64(b.mem, barHeader+barSlotSize*i) }

// SetAction sets the function this handle's party runs when it is the
// last to arrive, before the others are released: Python's action. Exactly
// one party runs an action per generation, the last to arrive, and only
// if its handle has one: set the same action on every party's handle
// (an action does not travel to a child with the Barrier). While it runs,
// the generation is full: a party that arrives meanwhile waits for the
// next one. If the action returns an error, the barrier breaks: that party
// gets an error wrapping both [ErrBroken] and the action's error, the
// others [ErrBroken]. nil removes the action. It is safe to call at any
// time; a Wait that has begun may use the action before or after.
func (b *Barrier) SetAction(action func() error) {
	if action == nil {
		b.action.Store(nil)
		return
	}
	b.action.Store(&action)
}

// Wait waits until all parties have called Wait and returns this party's
// arrival index, 0 to Parties()-1. It returns [ErrBroken] if the barrier is
// or becomes broken, a party's death included (which it checks for before
// it gives up on ctx), or is reset while this party waits. If ctx is done
// first it breaks the barrier for the others and returns an error that
// wraps both [ErrBroken] and ctx.Err(); if ctx is done before the party
// arrives (the guard or a running action still to wait for), it returns
// ctx.Err() and breaks nothing.
func (b *Barrier) Wait(ctx context.Context) (int, error) {
	if err := b.enter(); err != nil {
		return 0, err
	}
	defer b.leave()
	for {
		if err := lockRepair(ctx, b.guard, b.breakLocked); err != nil {
			return 0, err
		}
		g := b.gen.Load()
		if g&brokenBit != 0 {
			b.guard.Unlock()
			return 0, ErrBroken
		}
		idx := int(b.arrive.Load())
		if idx == b.parties && liveness.Token(b.slot(idx-1).Load()).Valid() {
			// The last party runs the action (its token in the last
			// slot): wait for the next generation.
			b.guard.Unlock()
			if err := b.sleep(ctx, g); err != nil {
				return 0, err
			}
			continue
		}
		if idx < 0 || idx >= b.parties {
			b.breakLocked()
			b.guard.Unlock()
			return 0, fmt.Errorf("semaphore: %d parties arrived at a barrier of %d: %w", idx, b.parties, ErrCorrupt)
		}
		b.slot(idx).Store(uint64(self()))
		if idx == b.parties-1 {
			return idx, b.complete(g)
		}
		b.arrive.Store(uint32(idx + 1))
		b.guard.Unlock()
		return idx, b.await(ctx, g)
	}
}

// complete ends generation g, which this party, the last, has just filled:
// it runs the action (without the guard, which it holds on entry and
// releases), then releases the others.
func (b *Barrier) complete(g uint32) error {
	if action := b.action.Load(); action != nil {
		b.arrive.Store(uint32(b.parties))
		b.guard.Unlock()
		aerr := (*action)()
		if err := lockRepair(context.Background(), b.guard, b.breakLocked); err != nil {
			return err
		}
		if b.gen.Load() != g { // broken (a party gave up or died) or reset meanwhile
			b.guard.Unlock()
			return ErrBroken
		}
		if aerr != nil {
			b.breakLocked()
			b.guard.Unlock()
			return fmt.Errorf("%w: the barrier's action failed: %w", ErrBroken, aerr)
		}
	}
	b.arrive.Store(0)
	for i := range b.parties {
		b.slot(i).Store(0)
	}
	b.outcomes.And(^outcomeBit(g)) // before gen: a waiter loads gen, then outcomes
	b.gen.Store(g + genIncrement)
	b.guard.Unlock()
	futex.Wake(addr(b.gen), 0)
	return nil
}

// outcomeBit is generation g's bit of the outcomes word.
func outcomeBit(g uint32) uint64 { return 1 << ((g >> 1) % 64) }

// ended returns the outcome of generation g, which has ended: nil if it
// completed, ErrBroken if it was reset.
func (b *Barrier) ended(g uint32) error {
	if b.outcomes.Load()&outcomeBit(g) != 0 {
		return ErrBroken
	}
	return nil
}

// watchOpts returns the options of a wait in generation g: follow the
// parties that arrived, and break g if one died.
func (b *Barrier) watchOpts(g uint32) *robust.WaitOptions {
	return &robust.WaitOptions{
		Closer: &b.closer,
		Watch: func() bool {
			b.checkParties(g)
			return b.gen.Load() != g
		},
		Holders: func() []liveness.Token { return b.arrived(g) },
	}
}

// await waits, as a party that arrived in generation g, for g to end.
func (b *Barrier) await(ctx context.Context, g uint32) error {
	opts := b.watchOpts(g)
	for {
		err := robust.WaitValue(ctx, b.gen, g, opts)
		now := b.gen.Load()
		switch {
		case now>>1 != g>>1:
			return b.ended(g)
		case b.closed():
			return b.giveUp(g, os.ErrClosed)
		case now&brokenBit != 0:
			return ErrBroken
		case err != nil:
			return b.giveUp(g, err)
		}
	}
}

// sleep waits, as a party that has not arrived, for generation g (whose
// last party runs the action) to end; it breaks nothing when it gives up.
func (b *Barrier) sleep(ctx context.Context, g uint32) error {
	opts := b.watchOpts(g)
	for b.gen.Load() == g {
		if err := robust.WaitValue(ctx, b.gen, g, opts); err != nil {
			return err
		}
	}
	return nil
}

// arrived returns the tokens of the parties that arrived in generation g,
// for a waiter to follow. It reads without the guard (a snapshot).
func (b *Barrier) arrived(g uint32) []liveness.Token {
	if b.gen.Load() != g {
		return nil
	}
	n := min(int(b.arrive.Load()), b.parties)
	toks := make([]liveness.Token, 0, n)
	for i := range n {
		if t := liveness.Token(b.slot(i).Load()); t != 0 {
			toks = append(toks, t)
		}
	}
	return toks
}

// giveUp breaks generation g for the others, unless it ended meanwhile.
//
// It waits for the guard only briefly (its holders never block while they
// hold it): if it is held for longer, by a stopped process or in corrupt
// memory, giveUp breaks the barrier without it; the broken bit is never
// cleared, so the worst a racing guard holder can do is complete g first.
func (b *Barrier) giveUp(g uint32, err error) error {
	if lerr := lockGuard(b.guard, b.breakLocked); lerr != nil {
		if b.gen.CompareAndSwap(g, g|brokenBit) {
			futex.Wake(addr(b.gen), 0)
		}
		if now := b.gen.Load(); now>>1 != g>>1 {
			return b.ended(g)
		}
		return gaveUp(err)
	}
	defer b.guard.Unlock()
	now := b.gen.Load()
	if now>>1 != g>>1 {
		return b.ended(g) // everyone arrived (or a Reset came) before we gave up
	}
	b.breakLocked()
	return gaveUp(err)
}

// gaveUp is the error of a party that broke the barrier giving up on err
// (its ctx's error, or os.ErrClosed): both ErrBroken and err.
func gaveUp(err error) error {
	return fmt.Errorf("%w: this party gave up: %w", ErrBroken, err)
}

// checkParties breaks generation g if a party that arrived is dead: proven
// dead, or named by a token that names nobody (corrupt memory).
func (b *Barrier) checkParties(g uint32) {
	if lockGuard(b.guard, b.breakLocked) != nil {
		return
	}
	defer b.guard.Unlock()
	if b.gen.Load() != g {
		return // the caller re-reads gen
	}
	n := min(int(b.arrive.Load()), b.parties)
	for i := range n {
		t := liveness.Token(b.slot(i).Load())
		if !t.Valid() || liveness.Check(t) == liveness.Dead {
			b.breakLocked()
			return
		}
	}
}

// breakLocked breaks the barrier; the caller holds the guard.
func (b *Barrier) breakLocked() {
	b.gen.Or(brokenBit)
	b.arrive.Store(0)
	futex.Wake(addr(b.gen), 0)
}

// Abort breaks the barrier: every party waiting, and every later Wait,
// gets [ErrBroken].
func (b *Barrier) Abort() error {
	if b.closed() {
		return os.ErrClosed
	}
	if err := lockRepair(context.Background(), b.guard, b.breakLocked); err != nil {
		return err
	}
	b.breakLocked()
	b.guard.Unlock()
	return nil
}

// Reset returns the barrier to its initial state, as Python's reset does:
// the parties waiting in it, and one running the action, get [ErrBroken];
// a broken barrier is usable again. A party that was descheduled while
// more than 64 further generations ended may misreport how its own ended
// (see "Barrier" in the source).
func (b *Barrier) Reset() error {
	if b.closed() {
		return os.ErrClosed
	}
	if err := lockRepair(context.Background(), b.guard, b.breakLocked); err != nil {
		return err
	}
	defer b.guard.Unlock()
	g := b.gen.Load()
	if g&brokenBit == 0 && b.arrive.Load() == 0 {
		return nil // nobody waits: already the initial state
	}
	b.outcomes.Or(outcomeBit(g)) // before gen: a waiter loads gen, then outcomes
	b.arrive.Store(0)
	for i := range b.parties {
		b.slot(i).Store(0)
	}
	b.gen.Store((g | brokenBit) + 1) // the next generation, not broken
	futex.Wake(addr(b.gen), 0)
	return nil
}

// NWaiting returns the number of parties waiting in the current
// generation (Python's n_waiting); 0 when the barrier is broken. It is a
// snapshot.
func (b *Barrier) NWaiting() int {
	if b.Broken() {
		return 0
	}
	return min(int(b.arrive.Load()), b.parties-1)
}

// Broken reports whether the barrier is broken.
// After Close it reports true.
func (b *Barrier) Broken() bool { return b.closed() || b.gen.Load()&brokenBit != 0 }

// Segment returns the segment b lives in.
func (b *Barrier) Segment() *shm.Segment { return b.seg }

// Offset returns b's offset in [shm.Segment.Bytes].
func (b *Barrier) Offset() int { return b.off }

// Close releases the Barrier's own segment, if it made or opened one. A
// party of this process waiting in Wait gives up: it breaks the barrier and
// returns [os.ErrClosed]. It is safe to call twice.
func (b *Barrier) Close() error { return b.close(b.gen, b.guard.Sleepers()) }

// GobEncode encodes a handle to b; see the package doc.
func (b *Barrier) GobEncode() ([]byte, error) { return b.encode() }

// GobDecode attaches b, which must be new, to the Barrier a handle names.
func (b *Barrier) GobDecode(data []byte) error {
	return decode(data, func(seg *shm.Segment, off int) (*object, error) {
		return &b.object, b.attach(seg, off)
	})
}
