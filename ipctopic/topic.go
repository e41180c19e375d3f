package ipctopic

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/release"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/internal/sentinel"
	"github.com/ipckit/ipckit/shm"
)

// Policy says what a publisher does when a subscriber has not read the
// message that the next one would overwrite. It is fixed when the topic is
// created.
type Policy uint32

const (
	// Block makes publishers wait for the slowest live subscriber: every
	// subscriber receives every message published after it joined.
	Block Policy = 0
	// Overwrite makes publishers overwrite the oldest message regardless; a
	// subscriber that fell behind is told how many messages it missed
	// ([LaggedError]) and goes on from the oldest message still held.
	Overwrite Policy = 1
)

// String returns the policy's name.
func (p Policy) String() string {
	switch p {
	case Block:
		return "block"
	case Overwrite:
		return "overwrite"
	}
	return fmt.Sprintf("policy(%d)", uint32(p))
}

// Defaults of [Options].
const (
	DefaultSlots       = 1024
	DefaultMaxMsg      = 256
	DefaultSubscribers = 16
)

// DefaultSpin is the spin budget of a new handle and of its subscribers,
// and of one given 0 by [Topic.SetSpin].
const DefaultSpin = robust.DefaultSpin

// Options configures the creation of a topic: what is fixed for its life.
// A nil *Options, like the zero Options, means the defaults. The
// constructors only read it, during the call.
type Options struct {
	// Slots is how many messages the topic holds (rounded up to a power
	// of two, at least 2; default [DefaultSlots]): how far the slowest
	// subscriber may fall behind before the policy applies.
	Slots int
	// MaxMsg is the largest message in bytes (default [DefaultMaxMsg], at
	// most [MaxMessage]). Every slot reserves that much.
	MaxMsg int
	// Subscribers is how many subscribers can be joined at once (default
	// [DefaultSubscribers], at most [MaxSubscribers]).
	Subscribers int
	// Policy is what publishers do when the ring is full: [Block] (the
	// zero value) or [Overwrite].
	Policy Policy
	// Mode is the permission of a named topic's file (default 0600); only
	// [Create] uses it.
	Mode os.FileMode
}

func (o *Options) config() (config, error) {
	var v Options
	if o != nil {
		v = *o
	}
	c := config{slots: DefaultSlots, maxMsg: DefaultMaxMsg, subs: DefaultSubscribers, policy: v.Policy}
	bad := func(what string, n int, limit uint64) error {
		return fmt.Errorf("ipctopic: %s %d, want 1 to %d: %w", what, n, limit, os.ErrInvalid)
	}
	if v.Slots != 0 {
		if v.Slots < 0 || v.Slots > maxSlots {
			return c, bad("slots", v.Slots, maxSlots)
		}
		c.slots = max(minSlots, uint64(1)<<bits.Len64(uint64(v.Slots-1)))
	}
	if v.MaxMsg != 0 {
		if v.MaxMsg < 0 || v.MaxMsg > MaxMessage {
			return c, bad("maximum message", v.MaxMsg, MaxMessage)
		}
		c.maxMsg = uint64(v.MaxMsg)
	}
	if v.Subscribers != 0 {
		if v.Subscribers < 0 || v.Subscribers > MaxSubscribers {
			return c, bad("subscribers", v.Subscribers, MaxSubscribers)
		}
		c.subs = uint32(v.Subscribers)
	}
	if err := c.check(); err != nil {
		return c, fmt.Errorf("ipctopic: %w: %w", err, os.ErrInvalid)
	}
	return c, nil
}

// Topic is a handle to a publish/subscribe topic in shared memory. Get one
// from [New], [NewHeap], [Create], [Open] or by gob-decoding a handle. The
// zero Topic is a closed handle: every call on it returns an error wrapping
// [os.ErrClosed].
//
// A *Topic is safe for concurrent use by any number of goroutines (each
// may publish, subscribe or shut down), and its topic by any number of
// processes, each through its own handle. It must not be copied (go vet
// catches copies): pass the pointer. [Topic.Publish] does not retain msg.
type Topic struct {
	_ noCopy

	seg    *shm.Segment
	b      []byte // the payload
	cfg    config
	mask   uint64
	stride uint64
	ring   []byte

	plock     *robust.Lock
	tail      *atomic.Uint64
	dropped   *atomic.Uint64
	gate      *atomic.Uint64
	reclaimed *atomic.Uint64
	waits     *atomic.Uint64
	shut      *atomic.Uint32
	dataFx    *atomic.Uint32
	spaceFx   *atomic.Uint32

	// Lifetime: open is true from attach until Close; calls counts the
	// publisher-side calls in progress; closer ends this handle's sleeps.
	// mu guards subs, the handle's joined subscribers, and orders Subscribe
	// against Close.
	open      atomic.Bool
	calls     atomic.Int64
	closer    robust.Closer
	closeOnce sync.Once
	closeErr  error
	mu        sync.Mutex
	subs      map[*Subscriber]struct{}
	spin      atomic.Int64 // the spin setting subscribers start with

	// cachedMin is a lower bound of every owned cursor (see "Block
	// policy"), read and written under the publisher lock, which the
	// handle's goroutines take like any other process's.
	cachedMin uint64
	pubSpin   robust.Spinner

	faults faults
}

// faults are test hooks, bbolt's db.ops style: nil in production. A test
// helper sets one to kill itself at that point of a call.
type faults struct {
	// pubCopied runs inside Publish after the payload is written and
	// before the commit.
	pubCopied func()
	// pubCommitted runs inside Publish after the commit and before tail
	// moves.
	pubCommitted func()
	// repaired runs at the end of repair, with the lock taken over and
	// what the dead publisher left settled.
	repaired func()
}

// build makes a topic in a new segment made by mk(n, fill), which must call
// fill before anyone else can reach the segment.
func build(opts *Options, mk func(n int, fill func(*shm.Segment) error) (*shm.Segment, error)) (*Topic, error) {
	c, err := opts.config()
	if err != nil {
		return nil, err
	}
	seg, err := mk(int(c.size()), func(seg *shm.Segment) error {
		writeConfig(seg.Bytes(), c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return attach(seg)
}

// private adapts mk, which makes a segment nobody else can reach yet
// (anonymous or heap), to build.
func private(mk func(n int) (*shm.Segment, error)) func(int, func(*shm.Segment) error) (*shm.Segment, error) {
	return func(n int, fill func(*shm.Segment) error) (*shm.Segment, error) {
		seg, err := mk(n)
		if err != nil {
			return nil, err
		}
		if err := fill(seg); err != nil {
			seg.Close()
			return nil, err
		}
		return seg, nil
	}
}

// New makes a topic in an anonymous segment: it reaches other processes
// only in the argument of a child started by spawn, and its memory is
// freed when the last process using it exits. Bad options are an error
// wrapping [os.ErrInvalid]; opts.Mode does not apply.
func New(opts *Options) (*Topic, error) {
	return build(opts, private(shm.KindTopic.CreateAnonymous))
}

// NewHeap makes a topic as [New] does, on the Go heap: for one process
// only, where the race detector sees every access.
func NewHeap(opts *Options) (*Topic, error) {
	return build(opts, private(shm.KindTopic.NewHeap))
}

// Create makes a new named topic; it fails with an error wrapping
// [os.ErrExist] if the name is taken. The topic is whole before its name
// exists. Remove it with [Remove].
func Create(name string, opts *Options) (*Topic, error) {
	var so *shm.Options
	if opts != nil {
		so = &shm.Options{Mode: opts.Mode}
	}
	return build(opts, func(n int, fill func(*shm.Segment) error) (*shm.Segment, error) {
		return shm.KindTopic.CreateInit(name, n, so, fill)
	})
}

// Open attaches to the named topic made by [Create], after validating its
// layout (an invalid one is [ErrCorrupt]).
func Open(name string) (*Topic, error) {
	seg, err := shm.KindTopic.Open(name)
	if err != nil {
		return nil, err
	}
	t, err := attach(seg)
	if err != nil {
		return nil, fmt.Errorf("ipctopic: open %q: %w", name, err)
	}
	return t, nil
}

// Remove deletes the named topic's file; handles keep working until they
// are closed.
func Remove(name string) error { return shm.Remove(name) }

// attach returns a handle that owns seg, closing seg if it fails.
func attach(seg *shm.Segment) (*Topic, error) {
	t := new(Topic)
	if err := t.attachTo(seg); err != nil {
		seg.Close()
		return nil, err
	}
	return t, nil
}

// attachTo fills the zero handle t for the topic in seg and opens it.
func (t *Topic) attachTo(seg *shm.Segment) error {
	b := seg.Bytes()
	c, err := readConfig(b)
	if err != nil {
		return err
	}
	ctl := b[:ctlSize:ctlSize]
	l, err := robust.At(ctl[offPLock:offPLock+robust.Size], &robust.Options{Internal: true, Waits: u64At(ctl, offWaits), Closer: &t.closer})
	if err != nil {
		return err
	}
	t.seg, t.b, t.cfg, t.plock = seg, b, c, l
	t.mask, t.stride = c.slots-1, c.stride()
	end := c.size()
	t.ring = b[c.ringOff():end:end]
	t.tail, t.dropped, t.gate = u64At(ctl, offTail), u64At(ctl, offDropped), u64At(ctl, offGate)
	t.reclaimed, t.waits = u64At(ctl, offReclaimed), u64At(ctl, offWaits)
	t.shut, t.dataFx, t.spaceFx = u32At(ctl, offShutdown), u32At(ctl, offDataFx), u32At(ctl, offSpaceFx)
	t.subs = make(map[*Subscriber]struct{})
	t.SetSpin(0)
	t.open.Store(true)
	return nil
}

// SetSpin sets this handle's longest spin before sleeping on a futex: for
// its publishers waiting for room, and for the subscribers it makes from
// now on (see [Subscriber.SetSpin]). d == 0 means [DefaultSpin], d < 0
// never spin.
func (t *Topic) SetSpin(d time.Duration) {
	t.pubSpin.SetMax(d)
	t.spin.Store(int64(d))
}

// Policy returns the topic's policy.
func (t *Topic) Policy() Policy { return t.cfg.policy }

// Slots returns how many messages the topic holds.
func (t *Topic) Slots() int { return int(t.cfg.slots) }

// MaxMsg returns the largest message the topic accepts.
func (t *Topic) MaxMsg() int { return int(t.cfg.maxMsg) }

// MaxSubscribers returns how many subscribers can be joined at once.
func (t *Topic) MaxSubscribers() int { return int(t.cfg.subs) }

// Segment returns the segment the topic lives in. It is closed with the
// handle.
func (t *Topic) Segment() *shm.Segment { return t.seg }

// enter starts a publisher-side call: errClosed on a closed handle.
func (t *Topic) enter() error {
	t.calls.Add(1)
	if !t.open.Load() {
		t.calls.Add(-1)
		return errClosed
	}
	return nil
}

func (t *Topic) leave() { t.calls.Add(-1) }

// slot returns the stamp and length words and the payload of the slot of
// message seq.
func (t *Topic) slot(seq uint64) (stamp, n *atomic.Uint64, payload []byte) {
	off := (seq & t.mask) * t.stride
	s := t.ring[off : off+t.stride : off+t.stride]
	return u64At(s, slotStamp), u64At(s, slotLen), s[slotPayload:]
}

// entry returns subscriber entry i's owner and cursor words.
func (t *Topic) entry(i uint32) (owner, cursor *atomic.Uint64) {
	off := ctlSize + uint64(i)*subStride
	return u64At(t.b, off+subOwner), u64At(t.b, off+subCursor)
}

// Publish sends msg to every subscriber. Under the [Block] policy it waits
// while the slowest live subscriber is a full ring behind. It returns
// [ErrTooLarge] for a message over [Topic.MaxMsg], [ErrShutdown] once the
// topic is shut down, ctx.Err() (nothing published) if ctx is done first,
// an error wrapping [os.ErrClosed] once this handle is closed, and
// [ErrCorrupt] for impossible shared words. It does not retain msg.
func (t *Topic) Publish(ctx context.Context, msg []byte) error {
	if err := t.enter(); err != nil {
		return err
	}
	defer t.leave()
	if uint64(len(msg)) > t.cfg.maxMsg {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(msg), t.cfg.maxMsg)
	}
	for {
		if !t.open.Load() {
			return errClosed
		}
		if err := t.lock(ctx); err != nil {
			return err
		}
		if t.shut.Load() != 0 {
			t.plock.Unlock()
			return ErrShutdown
		}
		s := t.tail.Load()
		if s >= stampWriting-1 {
			t.plock.Unlock()
			return fmt.Errorf("ipctopic: tail %d: %w", s, ErrCorrupt)
		}
		if t.cfg.policy == Block && s-t.cachedMin >= t.cfg.slots {
			m, err := t.minCursor(s)
			if err != nil {
				t.plock.Unlock()
				return err
			}
			t.cachedMin = m
			if s-m >= t.cfg.slots {
				t.plock.Unlock()
				if err := t.waitRoom(ctx, s); err != nil {
					return err
				}
				continue
			}
		}
		t.write(s, msg)
		return nil
	}
}

// lock takes the publisher lock, repairing what a dead holder left.
func (t *Topic) lock(ctx context.Context) error {
	if t.plock.TryLockFree() {
		return nil
	}
	err := t.plock.Lock(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sentinel.ErrOwnerDead):
		t.repair()
		return nil
	case errors.Is(err, os.ErrClosed):
		return errClosed
	case errors.Is(err, ErrCorrupt):
		return fmt.Errorf("ipctopic: publisher lock: %w", err)
	}
	return err
}

// repair runs with the publisher lock taken over from a dead holder (see
// "A publisher's death").
func (t *Topic) repair() {
	s := t.tail.Load()
	stamp, _, _ := t.slot(s)
	switch stamp.Load() {
	case s + 1: // committed: the message is whole
		release.Store64(t.tail, s+1)
		robust.Wake(t.dataFx)
	case (s + 1) | stampWriting:
		// Counted once: the stamp then says "dropped" (no subscriber
		// takes it for message s, nor for any message of this slot), so
		// a repairer that dies after this is not counted again by the
		// next one.
		t.dropped.Add(1)
		release.Store64(stamp, s|stampWriting)
	}
	if t.faults.repaired != nil {
		t.faults.repaired()
	}
}

// publisher returns the publisher lock's holder if it is another process:
// the holder a subscriber waiting for a message follows (see "A
// publisher's death").
func (t *Topic) publisher() []liveness.Token {
	if h, _ := t.plock.Holder(); h != 0 && h != t.plock.Token() {
		return []liveness.Token{h}
	}
	return nil
}

// recoverPublisher takes the publisher lock over if its holder is dead,
// repairs what it left, and reports whether it did: the Watch of a
// subscriber waiting for a message.
func (t *Topic) recoverPublisher() bool {
	if ok, _ := t.plock.RecoverDead(); !ok {
		return false
	}
	t.repair()
	t.plock.Unlock()
	return true
}

// write publishes msg as message s, holding the publisher lock, which it
// releases.
func (t *Topic) write(s uint64, msg []byte) {
	stamp, n, payload := t.slot(s)
	release.Store64(stamp, (s+1)|stampWriting)
	copyIn(payload, msg)
	release.Store64(n, uint64(len(msg)))
	if t.faults.pubCopied != nil {
		t.faults.pubCopied()
	}
	release.Store64(stamp, s+1) // the commit: subscribers' stamp load pairs with it
	if t.faults.pubCommitted != nil {
		t.faults.pubCommitted()
	}
	release.Store64(t.tail, s+1)
	t.plock.Unlock() // a CAS: the full fence before the sleepers word's load
	if t.dataFx.Load()&1 != 0 {
		robust.Wake(t.dataFx)
	}
}

// minCursor returns the smallest cursor of an owned entry, or s (the tail)
// if none is owned. A cursor beyond s, or a full ring and more behind, is
// impossible under the block policy: ErrCorrupt.
func (t *Topic) minCursor(s uint64) (uint64, error) {
	m := s
	for i := range t.cfg.subs {
		owner, cursor := t.entry(i)
		if owner.Load() == 0 {
			continue
		}
		c := cursor.Load()
		if c > s || s-c > t.cfg.slots {
			if owner.Load() == 0 {
				continue // left meanwhile
			}
			return 0, fmt.Errorf("ipctopic: subscriber %d at message %d, tail %d, %d slots: %w", i, c, s, t.cfg.slots, ErrCorrupt)
		}
		m = min(m, c)
	}
	return m, nil
}

// blockers returns the tokens of the owners of the entries whose cursor
// keeps message s from being published (the holders a waiting publisher
// follows).
func (t *Topic) blockers(s uint64) []liveness.Token {
	var toks []liveness.Token
	for i := range t.cfg.subs {
		owner, cursor := t.entry(i)
		if o := owner.Load(); o != 0 && s-cursor.Load() >= t.cfg.slots {
			toks = append(toks, liveness.Token(o))
		}
	}
	return toks
}

// reclaimDead frees every entry whose owner is dead, and reports whether it
// freed any (Stats.Reclaimed counts them).
func (t *Topic) reclaimDead() bool {
	freed := false
	for i := range t.cfg.subs {
		owner, _ := t.entry(i)
		o := owner.Load()
		if o == 0 || liveness.Check(liveness.Token(o)) != liveness.Dead {
			continue
		}
		if owner.CompareAndSwap(o, 0) {
			t.reclaimed.Add(1)
			freed = true
		}
	}
	if freed {
		robust.Wake(t.spaceFx)
	}
	return freed
}

// waitRoom waits, without the publisher lock, until message s can be
// published (the slowest subscriber moved, left or was reclaimed), the
// tail moved (another publisher used the room), or the topic was shut
// down: see "Block policy".
func (t *Topic) waitRoom(ctx context.Context, s uint64) error {
	need := s - t.cfg.slots + 1
	for g := t.gate.Load(); int64(g-need) < 0 && !t.gate.CompareAndSwap(g, need); g = t.gate.Load() {
	}
	ready := func() bool {
		if t.shut.Load() != 0 || !t.open.Load() {
			return true
		}
		cur := t.tail.Load()
		if cur != s {
			return true
		}
		m, err := t.minCursor(cur)
		return err != nil || cur-m < t.cfg.slots
	}
	ok, start := t.pubSpin.Spin(ready)
	if ok {
		return nil
	}
	err := robust.Wait(ctx, t.spaceFx, ready, &robust.WaitOptions{
		Closer: &t.closer, Waits: t.waits,
		Watch:   t.reclaimDead,
		Holders: func() []liveness.Token { return t.blockers(t.tail.Load()) },
	})
	if err == nil && ready() {
		t.pubSpin.Slept(start)
	}
	return waitErr(err)
}

// waitErr is a wait's error as the topic returns it.
func waitErr(err error) error {
	if errors.Is(err, os.ErrClosed) {
		return errClosed
	}
	return err
}

// Stats are a topic's counters, shared by every process using it. It is a
// plain value.
type Stats struct {
	Published   uint64 // messages published (the next message's number)
	Dropped     uint64 // messages lost with a publisher that died writing them
	Reclaimed   uint64 // subscriber slots taken back from dead processes
	Subscribers int    // subscriber slots owned now (dead owners not yet reclaimed included)
	Waits       uint64 // futex sleeps
}

// Stats returns the topic's counters; a closed handle returns the zero
// Stats.
func (t *Topic) Stats() Stats {
	if t.enter() != nil {
		return Stats{}
	}
	defer t.leave()
	st := Stats{Published: t.tail.Load(), Dropped: t.dropped.Load(), Reclaimed: t.reclaimed.Load(), Waits: t.waits.Load()}
	for i := range t.cfg.subs {
		if owner, _ := t.entry(i); owner.Load() != 0 {
			st.Subscribers++
		}
	}
	return st
}

// Shutdown ends the topic for every process (as ipcqueue's Queue.Shutdown
// does a queue): Publish and Subscribe then return [ErrShutdown];
// subscribers receive what is left for them and then [io.EOF]; every waiter
// in every process is woken. It is safe to call twice. It does not release
// this handle: see [Topic.Close]. On a corrupt topic it shuts the topic
// down all the same and returns [ErrCorrupt].
//
// It takes the publisher lock with no deadline, as the queue's Shutdown
// takes its producer lock: it waits while a publisher is inside Publish,
// and, since a holder that cannot be proven dead is never robbed, for as
// long as the lock word names a process whose liveness cannot be proven
// (a corrupt word, or a holder whose registry this process cannot read).
// Closing the handle ends that wait: Shutdown then returns an error
// wrapping [os.ErrClosed].
func (t *Topic) Shutdown() error {
	if err := t.enter(); err != nil {
		return err
	}
	defer t.leave()
	// Under the publisher lock, so that every Publish either committed
	// before or sees shut.
	err := t.lock(context.Background())
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return err
	}
	t.shut.Store(1)
	if err == nil {
		t.plock.Unlock()
	}
	robust.WakeAll(t.dataFx)
	robust.WakeAll(t.spaceFx)
	return err
}

// IsShutdown reports whether the topic has been shut down (by any process);
// false on a closed handle.
func (t *Topic) IsShutdown() bool {
	if t.enter() != nil {
		return false
	}
	defer t.leave()
	return t.shut.Load() != 0
}

// Close releases this handle: its subscribers leave the topic (as
// [Subscriber.Close]), calls blocked on the handle or its subscribers
// return an error wrapping [os.ErrClosed] at once, as does every later
// call, and the mapping is released once no call is in progress. The topic
// goes on for every other handle (a named topic's file stays: see
// [Remove]; to end it for everyone, [Topic.Shutdown]). Close is safe to
// call twice, and concurrently with any other call.
func (t *Topic) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.closeHandle() })
	return t.closeErr
}

func (t *Topic) closeHandle() error {
	if t.seg == nil {
		return nil // the zero Topic
	}
	t.mu.Lock()
	t.open.Store(false)
	subs := make([]*Subscriber, 0, len(t.subs))
	for s := range t.subs {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	t.closer.Close(t.spaceFx, t.plock.Sleepers())
	var errs []error
	for _, s := range subs {
		errs = append(errs, s.Close())
	}
	for pause := time.Microsecond; t.calls.Load() != 0; pause = min(2*pause, time.Millisecond) {
		time.Sleep(pause)
	}
	return errors.Join(append(errs, t.seg.Close())...)
}

// noCopy makes go vet's copylocks check report copies.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
