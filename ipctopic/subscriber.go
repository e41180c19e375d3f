package ipctopic

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/release"
	"github.com/ipckit/ipckit/internal/robust"
)

// Subscriber receives, in order, every message published on its topic
// after [Topic.Subscribe] returned it (under the [Overwrite] policy, less
// those a [LaggedError] reports missed). Get one from [Topic.Subscribe];
// the zero Subscriber is not usable.
//
// A *Subscriber is safe for concurrent use: its calls take turns, each
// message going to one of them. It must not be copied. It is this
// process's: it does not travel to children (pass the [Topic] and subscribe
// there). [Subscriber.Close] leaves the topic; so does closing its Topic
// handle.
type Subscriber struct {
	_ noCopy

	t      *Topic
	idx    uint32
	token  uint64
	owner  *atomic.Uint64
	cursor *atomic.Uint64
	closer robust.Closer
	spin   robust.Spinner

	mu     sync.Mutex // held by each call, and by Close
	closed bool       // under mu
	pos    uint64     // the next message; under mu
	shown  uint64     // the cursor last stored in the entry (block policy); under mu
	// showMask is the cursor publication's batch less one (block policy: a
	// power of two; see "Block policy"). The zero value publishes every
	// message.
	showMask uint64
	scratch  []byte // Read's copy under the overwrite policy in race builds; under mu
}

// Subscribe joins the topic: the subscriber receives every message
// published after Subscribe returns, and none before. It takes a
// subscriber slot, reclaiming the slots of dead processes if every slot is
// taken, and fails with [ErrFull] if none is free. It returns [ErrShutdown]
// on a shut down topic, ctx.Err() if ctx is done while it waits for the
// publisher lock, and an error wrapping [os.ErrClosed] on a closed handle.
func (t *Topic) Subscribe(ctx context.Context) (*Subscriber, error) {
	if err := t.enter(); err != nil {
		return nil, err
	}
	defer t.leave()
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	if t.shut.Load() != 0 {
		t.plock.Unlock()
		return nil, ErrShutdown
	}
	s := &Subscriber{t: t, token: uint64(t.plock.Token()), showMask: showBatch(t.cfg.slots) - 1}
	ok := s.claim()
	if !ok && t.reclaimDead() {
		ok = s.claim()
	}
	t.plock.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %d slots", ErrFull, t.cfg.subs)
	}
	s.spin.SetMax(time.Duration(t.spin.Load()))
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.open.Load() {
		s.leave()
		return nil, errClosed
	}
	t.subs[s] = struct{}{}
	return s, nil
}

// claim takes a free entry for s, under the publisher lock: it stores the
// cursor (tail: nothing is published while the lock is held), then the
// owner (see "Subscribers" in layout.go).
func (s *Subscriber) claim() bool {
	t := s.t
	for i := range t.cfg.subs {
		owner, cursor := t.entry(i)
		if owner.Load() != 0 {
			continue
		}
		s.pos = t.tail.Load()
		s.shown = s.pos
		cursor.Store(s.pos)
		if owner.CompareAndSwap(0, s.token) {
			s.idx, s.owner, s.cursor = i, owner, cursor
			return true
		}
	}
	return false
}

// leave frees s's entry and wakes publishers that may wait for it.
func (s *Subscriber) leave() {
	s.owner.CompareAndSwap(s.token, 0)
	robust.Wake(s.t.spaceFx)
}

// SetSpin sets this subscriber's longest spin before it sleeps waiting for
// a message: d == 0 means [DefaultSpin], d < 0 never spin.
func (s *Subscriber) SetSpin(d time.Duration) { s.spin.SetMax(d) }

// Recv returns the next message, in a new slice that belongs to the
// caller, waiting while there is none. Once the topic is shut down and
// every message published before is received, it returns [io.EOF]. Under
// the [Overwrite] policy it returns a [*LaggedError] when messages were
// overwritten before this subscriber read them; the next call returns the
// oldest message still held. It returns ctx.Err() (nothing received) if
// ctx is done first, an error wrapping [os.ErrClosed] once the subscriber
// or its Topic handle is closed, and [ErrCorrupt] for impossible shared
// words.
func (s *Subscriber) Recv(ctx context.Context) ([]byte, error) {
	var out []byte
	err := s.next(ctx, func(n int) []byte { out = make([]byte, n); return out }, nil)
	return out, err
}

// Read calls fn with the next message, in the topic's memory (no copy),
// waiting as [Subscriber.Recv] does, and returns fn's error (the message is
// received either way). msg is valid only until fn returns, and fn must not
// call this subscriber's methods, nor close its Topic handle (Close waits
// for fn to return).
//
// Under the [Block] policy no publisher can touch msg while fn runs. Under
// the [Overwrite] policy one may overwrite it: Read then returns a
// [*LaggedError] counting it as missed, and whatever fn made of msg must be
// discarded. (Race-detector builds give fn a copy under Overwrite.)
func (s *Subscriber) Read(ctx context.Context, fn func(msg []byte) error) error {
	var ferr error
	err := s.next(ctx, nil, func(msg []byte) { ferr = fn(msg) })
	if err != nil {
		return err
	}
	return ferr
}

// next receives one message: copied into the slice alloc returns for its
// length, or else passed to fn where it lies (see Read).
func (s *Subscriber) next(ctx context.Context, alloc func(n int) []byte, fn func([]byte)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	t := s.t
	for {
		c := s.pos
		stamp, nw, payload := t.slot(c)
		st := stamp.Load()
		if st == c+1 {
			return s.take(c, stamp, nw, payload, alloc, fn)
		}
		if v := st &^ stampWriting; v > c+1 {
			return s.lagged(c, v)
		}
		// Message c is not published yet.
		if t.shut.Load() != 0 {
			// Every Publish committed before shut was stored: one more
			// look settles whether message c is among them.
			if stamp.Load() == c+1 {
				continue
			}
			return io.EOF
		}
		if t.cfg.policy == Block {
			s.show() // before waiting: a publisher may wait for this cursor
		}
		if err := s.wait(ctx, stamp, st); err != nil {
			return err
		}
	}
}

// take delivers message c, whose stamp was just seen committed, and moves
// on. Under the overwrite policy it checks the stamp again after reading,
// and reports an overwrite as a lag.
func (s *Subscriber) take(c uint64, stamp *atomic.Uint64, nw *atomic.Uint64, payload []byte, alloc func(int) []byte, fn func([]byte)) error {
	t := s.t
	n := nw.Load()
	over := t.cfg.policy == Overwrite
	if n > t.cfg.maxMsg {
		if over && stamp.Load() != c+1 {
			return s.lagged(c, stamp.Load()&^stampWriting)
		}
		return fmt.Errorf("ipctopic: message %d of %d bytes, at most %d: %w", c, n, t.cfg.maxMsg, ErrCorrupt)
	}
	msg := payload[:n]
	if fn != nil && (!over || !raceEnabled) {
		fn(msg) // in place; under overwrite, checked afterwards
		if over && stamp.Load() != c+1 {
			return s.lagged(c, stamp.Load()&^stampWriting)
		}
		s.advance(c + 1)
		return nil
	}
	var dst []byte
	if alloc != nil {
		dst = alloc(int(n))
	} else {
		if uint64(cap(s.scratch)) < n {
			s.scratch = make([]byte, t.cfg.maxMsg)
		}
		dst = s.scratch[:n]
	}
	copyOut(dst, msg)
	if over && stamp.Load() != c+1 { // overwritten while copied: discard
		return s.lagged(c, stamp.Load()&^stampWriting)
	}
	s.advance(c + 1)
	if fn != nil {
		fn(dst)
	}
	return nil
}

// lagged handles message c found overwritten by the message whose stamp is
// v (see "Overwrite policy"): it skips to the oldest message that can still
// be whole and reports how many it skipped. Under the block policy that
// cannot happen to a live subscriber: ErrCorrupt, saying whether its slot
// was taken from it.
func (s *Subscriber) lagged(c, v uint64) error {
	t := s.t
	if t.cfg.policy == Block {
		if o := s.owner.Load(); o != s.token {
			return fmt.Errorf("ipctopic: subscriber slot %d taken by %#x: %w", s.idx, o, ErrCorrupt)
		}
		return fmt.Errorf("ipctopic: message %d overwritten by %d under the block policy: %w", c, v-1, ErrCorrupt)
	}
	next := c + 1
	if v >= t.cfg.slots {
		next = max(next, v-t.cfg.slots) // the slot of message v-1 holds no older one
	}
	if tail := t.tail.Load(); tail >= t.cfg.slots {
		next = max(next, tail-t.cfg.slots)
	}
	s.advance(next)
	return &LaggedError{Missed: next - c}
}

// showBatch is how many messages a block-policy subscriber reads between
// two stores of its cursor (see "Block policy"): a power of two, at most a
// sixteenth of the ring.
func showBatch(slots uint64) uint64 { return min(64, max(1, slots/16)) }

// advance moves the subscriber to message next. Under the block policy it
// stores the cursor when next is a multiple of the batch, or when a
// publisher sleeps (see "Block policy").
func (s *Subscriber) advance(next uint64) {
	t := s.t
	s.pos = next
	if t.cfg.policy != Block {
		release.Store64(s.cursor, next)
		return
	}
	if next&s.showMask == 0 || t.spaceFx.Load()&1 != 0 {
		s.show()
	}
}

// show stores the block-policy subscriber's cursor, if it moved since it
// was last stored. The store is a full fence, after which it wakes
// publishers waiting for this cursor to cross their gate.
func (s *Subscriber) show() {
	t := s.t
	prev, next := s.shown, s.pos
	if prev == next {
		return
	}
	s.shown = next
	s.cursor.Store(next)
	if t.spaceFx.Load()&1 != 0 {
		if g := t.gate.Load(); int64(prev-g) < 0 && int64(next-g) >= 0 {
			robust.Wake(t.spaceFx)
		}
	}
}

// wait waits until the stamp of the slot of message c is no longer st (a
// message arrived or is being written), the topic is shut down, or s is
// closed.
func (s *Subscriber) wait(ctx context.Context, stamp *atomic.Uint64, st uint64) error {
	t := s.t
	ready := func() bool { return stamp.Load() != st || t.shut.Load() != 0 || s.closer.Closed() }
	ok, start := s.spin.Spin(ready)
	if s.closer.Closed() {
		return errClosed
	}
	if ok {
		return nil
	}
	if o := s.owner.Load(); o != s.token {
		return fmt.Errorf("ipctopic: subscriber slot %d taken by %#x: %w", s.idx, o, ErrCorrupt)
	}
	o := robust.WaitOptions{Closer: &s.closer, Waits: t.waits}
	if t.publisher() != nil {
		o.Watch, o.Holders = t.recoverPublisher, t.publisher
	}
	err := robust.Wait(ctx, t.dataFx, ready, &o)
	if err != nil {
		return waitErr(err)
	}
	if ready() {
		s.spin.Slept(start)
	}
	return nil
}

// Close leaves the topic: the subscriber's slot is freed (publishers stop
// waiting for it), a call blocked on it returns an error wrapping
// [os.ErrClosed] at once, as does every later call. It waits for a Read's
// fn in progress to return. It is safe to call twice.
func (s *Subscriber) Close() error {
	s.closer.Close(s.t.dataFx)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.leave()
	s.mu.Unlock()
	s.t.mu.Lock()
	delete(s.t.subs, s)
	s.t.mu.Unlock()
	return nil
}
