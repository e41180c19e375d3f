package ipcqueue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ipckit/ipckit/internal/release"
	"github.com/ipckit/ipckit/shm"
)

// Options configures a queue handle. A nil *Options means the defaults.
type Options struct {
	// MaxMsg is the maximum message size in bytes, fixed when the queue is
	// created (default: a quarter of the capacity, capped at 1 MiB; at most
	// about half the capacity). Ignored by Open.
	MaxMsg int

	// Mode is the permission of a named queue's file (default 0600).
	Mode os.FileMode

	// Spin is this handle's longest spin before sleeping on a futex, for
	// both Put (queue full) and Get (queue empty): 0 means [DefaultSpin],
	// a negative value means never spin (pure futex waits). The budget
	// adapts below this bound; see the package's wait.go.
	Spin time.Duration
}

func (o *Options) spin() time.Duration {
	switch {
	case o == nil || o.Spin == 0:
		return DefaultSpin
	case o.Spin < 0:
		return 0
	}
	return o.Spin
}

// Queue is a handle to a bounded MPMC queue of byte messages in shared
// memory. Every process (and goroutine) may Put and Get concurrently
// through its handle; a Queue is safe for concurrent use, except [Queue.Close],
// which must not race with other calls on the same handle. It must not be
// copied. The zero Queue is not usable: get one from [New], [Create],
// [Open], [NewHeap] or gob-decoding a handle.
type Queue struct {
	_ noCopy

	seg    *shm.Segment
	ctl    []byte         // control block
	ring   []byte         // capacity bytes
	base   unsafe.Pointer // &ring[0]
	cap    uint64
	mask   uint64
	maxMsg uint64
	me     uint64 // this process's lock word

	plock, clock rlock
	tail, head   *atomic.Uint64
	freed        *atomic.Uint64
	puts, gets   *atomic.Uint64
	dropped      *atomic.Uint64
	claim        *atomic.Uint64
	cdead        *atomic.Uint64
	waits        *atomic.Uint64
	closed       *atomic.Uint32
	dataFx       *atomic.Uint32
	spaceFx      *atomic.Uint32

	pubEvery uint64 // consumers publish freed every pubEvery bytes
	detached atomic.Bool

	// The fields each side writes as it goes sit apart, with the pads'
	// 128 bytes (two cache lines, which the adjacent-line prefetcher
	// fetches in pairs) between them and everything else: a producer and
	// a consumer goroutine sharing this handle would otherwise bounce one
	// line between their cores on every message.
	_ [128]byte

	// cachedHead is a lower bound of head, read and written only under the
	// producer lock, so a producer loads the shared freed (or head) only
	// when the ring looks full.
	cachedHead uint64
	putSpin    spinner
	_          [128]byte
	pace       pacer // under the consumer lock
	getSpin    spinner
	_          [128]byte

	// fault, if set (tests only), is called at named points of Put and
	// Get so that a test can kill the process there.
	fault func(point string)
}

// capacityFor rounds size up to a power of two >= minCapacity.
func capacityFor(size int) (uint64, error) {
	if size <= 0 || size > maxCapacity {
		return 0, fmt.Errorf("%w: capacity %d", ErrSize, size)
	}
	c := uint64(1) << bits.Len64(uint64(size-1))
	return max(c, minCapacity), nil
}

func (o *Options) config(size int) (config, error) {
	c, err := capacityFor(size)
	if err != nil {
		return config{}, err
	}
	m := min(c/4, 1<<20, maxMsgFor(c))
	if o != nil && o.MaxMsg != 0 {
		if o.MaxMsg < 0 || uint64(o.MaxMsg) > maxMsgFor(c) {
			return config{}, fmt.Errorf("%w: maximum message %d for capacity %d (at most %d)", ErrSize, o.MaxMsg, c, maxMsgFor(c))
		}
		m = uint64(o.MaxMsg)
	}
	return config{capacity: c, maxMsg: m}, nil
}

func segOpts(o *Options) *shm.Options {
	if o == nil {
		return nil
	}
	return &shm.Options{Mode: o.Mode}
}

// build creates a queue of capacity size (rounded up to a power of two)
// in a new segment made by mk.
func build(size int, opts *Options, mk func(n int, so *shm.Options) (*shm.Segment, error)) (*Queue, error) {
	c, err := opts.config(size)
	if err != nil {
		return nil, err
	}
	seg, err := mk(ctlSize+int(c.capacity), segOpts(opts))
	if err != nil {
		return nil, err
	}
	writeConfig(seg.Bytes(), c)
	return attach(seg, opts)
}

// New makes a queue of size bytes (rounded up to a power of two, at least
// 64) in an anonymous segment: it reaches other processes only as an
// argument of a child started by spawn, and is freed when the last process
// using it exits.
func New(size int, opts *Options) (*Queue, error) {
	return build(size, opts, func(n int, _ *shm.Options) (*shm.Segment, error) { return shm.KindQueue.CreateAnonymous(n) })
}

// NewHeap makes a queue of size bytes on the Go heap: for one process only,
// where the race detector sees every access.
func NewHeap(size int, opts *Options) (*Queue, error) {
	return build(size, opts, func(n int, _ *shm.Options) (*shm.Segment, error) { return shm.KindQueue.NewHeap(n) })
}

// Create makes a new named queue of size bytes; it fails with an error
// wrapping [os.ErrExist] if the name is taken. Remove it with [Remove].
func Create(name string, size int, opts *Options) (*Queue, error) {
	q, err := build(size, opts, func(n int, so *shm.Options) (*shm.Segment, error) {
		return shm.KindQueue.Create(name, n, so)
	})
	if err != nil {
		return nil, fmt.Errorf("ipcqueue: create %q: %w", name, err)
	}
	return q, nil
}

// Open attaches to the named queue made by [Create], after validating its
// layout. Only opts.Spin is used.
func Open(name string, opts *Options) (*Queue, error) {
	seg, err := shm.KindQueue.Open(name)
	if err != nil {
		return nil, fmt.Errorf("ipcqueue: open %q: %w", name, err)
	}
	q, err := attach(seg, opts)
	if err != nil {
		return nil, fmt.Errorf("ipcqueue: open %q: %w", name, err)
	}
	return q, nil
}

// Remove deletes the named queue's file; handles keep working until they
// are detached.
func Remove(name string) error { return shm.Remove(name) }

// attach validates seg's control block and returns a handle that owns seg
// (closing seg if it fails).
func attach(seg *shm.Segment, opts *Options) (*Queue, error) {
	q := new(Queue)
	if err := q.attachTo(seg, opts); err != nil {
		seg.Close()
		return nil, err
	}
	return q, nil
}

// attachTo fills the zero handle q for the queue in seg.
func (q *Queue) attachTo(seg *shm.Segment, opts *Options) error {
	b := seg.Bytes()
	c, err := readConfig(b)
	if err != nil {
		return err
	}
	end := ctlSize + int(c.capacity)
	q.seg, q.ctl, q.ring = seg, b[:ctlSize:ctlSize], b[ctlSize:end:end]
	q.base = unsafe.Pointer(&q.ring[0])
	q.cap, q.mask, q.maxMsg, q.me = c.capacity, c.capacity-1, c.maxMsg, selfWord()
	q.pubEvery = c.capacity / 8
	q.plock = newRlock(u64At(q.ctl, offPLock), u32At(q.ctl, offPLockFx))
	q.clock = newRlock(u64At(q.ctl, offCLock), u32At(q.ctl, offCLockFx))
	q.tail, q.head = u64At(q.ctl, offTail), u64At(q.ctl, offHead)
	q.freed = u64At(q.ctl, offFreed)
	q.puts, q.gets = u64At(q.ctl, offPuts), u64At(q.ctl, offGets)
	q.dropped, q.cdead = u64At(q.ctl, offDropped), u64At(q.ctl, offCDead)
	q.claim = u64At(q.ctl, offClaim)
	q.waits = u64At(q.ctl, offWaits)
	q.closed = u32At(q.ctl, offClosed)
	q.dataFx, q.spaceFx = u32At(q.ctl, offDataFx), u32At(q.ctl, offSpaceFx)
	q.cachedHead = q.freed.Load()
	q.putSpin.init(opts.spin())
	q.getSpin.init(opts.spin())
	return nil
}

// SetSpin sets this handle's longest spin before sleeping (d < 0: never
// spin; d == 0: [DefaultSpin]). It affects this handle only.
func (q *Queue) SetSpin(d time.Duration) {
	s := (&Options{Spin: d}).spin()
	q.putSpin.init(s)
	q.getSpin.init(s)
}

// Capacity returns the ring's size in bytes.
func (q *Queue) Capacity() int { return int(q.cap) }

// MaxMsg returns the largest message the queue accepts.
func (q *Queue) MaxMsg() int { return int(q.maxMsg) }

// Segment returns the segment the queue lives in.
func (q *Queue) Segment() *shm.Segment { return q.seg }

// hdr returns the header word at position p (8-aligned: in bounds).
func (q *Queue) hdr(p uint64) *atomic.Uint64 { return (*atomic.Uint64)(q.at(p & q.mask)) }

// at is the address of ring offset off (< capacity), without a bounds
// check: the hot paths index the ring only at offsets they have masked or
// validated.
func (q *Queue) at(off uint64) unsafe.Pointer { return unsafe.Add(q.base, off) }

func (q *Queue) check() error {
	if q.detached.Load() {
		return os.ErrClosed
	}
	return nil
}

// Put appends msg to the queue, waiting while it is full. It returns
// [ErrTooLarge] (nothing written) for a message over [Queue.MaxMsg],
// [ErrShutdown] once the queue is closed, and ctx.Err() (nothing written)
// if ctx is done first. Put does not retain msg.
func (q *Queue) Put(ctx context.Context, msg []byte) error {
	if q.putFast(msg) {
		return nil
	}
	_, err := q.put(ctx, msg, true)
	return err
}

// TryPut appends msg if there is room now: false, nil means the queue is
// full (or another producer holds the producer lock a moment).
func (q *Queue) TryPut(msg []byte) (bool, error) {
	if q.putFast(msg) {
		return true, nil
	}
	return q.put(context.Background(), msg, false)
}

// putFast is Put's common case: the producer lock is free, the queue open,
// and the record fits before the ring's end within the cached free space.
// In every other case it changes nothing and reports false, and the
// general path (put) decides. It has no loop and no error to build, and
// indexes the ring without bounds checks at offsets it has validated
// (with Get's ready, a few ns off BenchmarkInProcess, measured side by
// side).
func (q *Queue) putFast(msg []byte) bool {
	n := uint64(len(msg))
	if n > q.maxMsg || q.detached.Load() || !q.plock.tryLock(q.me) {
		return false
	}
	t := q.tail.Load()
	pad, end := q.place(t, recLen(int(n)))
	if t&7 != 0 || end+hdrSize-q.cachedHead > q.cap || q.closed.Load() != 0 {
		q.plock.unlock()
		return false
	}
	q.write(t, pad, msg)
	return true
}

// place returns where a record of L bytes goes at tail t: after pad bytes
// of padding (0, or the rest of the ring if it would cross the ring's
// end), ending at end.
func (q *Queue) place(t, L uint64) (pad, end uint64) {
	if off := t & q.mask; off+L > q.cap {
		pad = q.cap - off
	}
	return pad, t + pad + L
}

func (q *Queue) put(ctx context.Context, msg []byte, block bool) (bool, error) {
	if err := q.check(); err != nil {
		return false, err
	}
	if uint64(len(msg)) > q.maxMsg {
		return false, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(msg), q.maxMsg)
	}
	L := recLen(len(msg))
	exact := false // check head itself, not only freed
	for {
		if err := q.lockProducers(ctx, block); err != nil {
			if errors.Is(err, errBusy) {
				return false, nil
			}
			return false, err
		}
		if q.closed.Load() != 0 {
			q.plock.unlock()
			return false, ErrShutdown
		}
		t := q.tail.Load()
		if t&7 != 0 {
			q.plock.unlock()
			return false, fmt.Errorf("%w: tail %d", ErrCorrupt, t)
		}
		pad, end := q.place(t, L)
		if end+hdrSize-q.cachedHead > q.cap {
			// Full by the cached head: look at freed; at head itself only
			// for TryPut or after spinning on freed failed, so a producer
			// on a full ring does not poll the line consumers write on
			// every message.
			if err := q.refreshHead(t, q.freed); err != nil {
				return false, err
			}
			if end+hdrSize-q.cachedHead > q.cap && (exact || !block) {
				if err := q.refreshHead(t, q.head); err != nil {
					return false, err
				}
			}
		}
		if end+hdrSize-q.cachedHead > q.cap {
			q.plock.unlock()
			if !block {
				return false, nil
			}
			lazyReady := func() bool {
				return end+hdrSize-q.freed.Load() <= q.cap || q.closed.Load() != 0
			}
			exactReady := func() bool {
				return end+hdrSize-q.head.Load() <= q.cap || q.closed.Load() != 0
			}
			ok, start := q.putSpin.spin(lazyReady)
			if ok {
				continue
			}
			exact = true
			if err := sleep(ctx, q.spaceFx, q.waits, exactReady); err != nil {
				return false, err
			}
			if exactReady() {
				q.putSpin.slept(start)
			}
			continue
		}
		q.write(t, pad, msg)
		return true, nil
	}
}

// write puts msg at tail t, after pad bytes of padding (0, or the rest of
// the ring), under the producer lock, which it releases. The caller has
// checked that the record and the terminator after it fit.
func (q *Queue) write(t, pad uint64, msg []byte) {
	// Claim (for a repairer, should this process die before it publishes
	// tail), then write the record (and the padding before it, committed
	// last). A plain store: only a repairer reads claim, after this
	// process is dead.
	p := t + pad
	end := p + recLen(len(msg))
	release.Store64(q.claim, end)
	o := p & q.mask
	*(*uint64)(q.at(end & q.mask)) = 0 // the terminator
	copy(unsafe.Slice((*byte)(q.at(o+hdrSize)), len(msg)), msg)
	if q.fault != nil {
		q.fault("put")
	}
	// Commit (release stores: the consumer's atomic load of the header
	// pairs with them), publish tail, unlock; then the atomic add is the
	// one full fence of Put, which orders those stores before the loads
	// of the futex words (no lost wake-up, see wait.go).
	release.Store64(q.hdr(p), mkHeader(p, len(msg), false))
	if pad != 0 {
		release.Store64(q.hdr(t), mkHeader(t, int(pad-hdrSize), true))
	}
	release.Store64(q.tail, end)
	q.plock.unlockRel()
	q.puts.Add(1)
	q.plock.wakeWaiters()
	wake(q.dataFx)
}

// refreshHead sets cachedHead from w (freed or head), under the producer
// lock with tail t; on an impossible value it unlocks and returns ErrCorrupt.
// (freed may lag head by up to about pubEvery plus a record and a padding.)
func (q *Queue) refreshHead(t uint64, w *atomic.Uint64) error {
	h := w.Load()
	limit := q.cap
	if w == q.freed {
		limit = 2 * q.cap
	}
	if t-h > limit || t&7 != 0 || h&7 != 0 {
		q.plock.unlock()
		return fmt.Errorf("%w: tail %d, head %d, capacity %d", ErrCorrupt, t, h, q.cap)
	}
	q.cachedHead = h
	return nil
}

// lockProducers takes the producer lock (block) or tries to, repairing
// what a dead holder left; errBusy means the lock is busy in try mode.
func (q *Queue) lockProducers(ctx context.Context, block bool) error {
	if q.plock.tryLock(q.me) {
		return nil
	}
	if !block {
		if q.plock.recoverDead(q.me) {
			return q.repairLocked()
		}
		return errBusy
	}
	rec, err := q.plock.lock(ctx, q.me, q.waits)
	if err != nil {
		return err
	}
	if rec {
		return q.repairLocked()
	}
	return nil
}

// repairLocked runs repairProducer with the lock just taken over, and
// releases the lock if the queue is corrupt.
func (q *Queue) repairLocked() error {
	if err := q.repairProducer(); err != nil {
		q.plock.unlock()
		return err
	}
	return nil
}

// repairProducer runs with the producer lock taken over from a dead
// holder. If the holder's claim is not beyond tail, it had published its
// record (it died before unlocking; its message is in the queue, though
// not counted in puts), or it died before it began to write (its message
// never entered the queue): nothing to do. Otherwise it advances tail over
// whatever the holder committed, and counts a dropped message if it
// committed nothing. An impossible tail is ErrCorrupt (the lock stays
// held: the caller releases it).
func (q *Queue) repairProducer() error {
	t := q.tail.Load()
	if t&7 != 0 {
		return fmt.Errorf("%w: tail %d", ErrCorrupt, t)
	}
	if c := q.claim.Load(); int64(c-t) <= 0 {
		wake(q.dataFx)
		return nil
	}
	committed := false
	for range 2 { // at most a padding record and the record after it
		w := q.hdr(t).Load()
		kind, n, err := decodeHeader(w, t, q.cap, q.maxMsg)
		if err != nil || kind == recEmpty {
			break
		}
		if kind == recPadding {
			t += hdrSize + uint64(n)
			continue
		}
		t += recLen(n)
		committed = true
		break
	}
	if committed {
		q.tail.Store(t)
		q.puts.Add(1)
	} else {
		q.dropped.Add(1)
	}
	wake(q.dataFx)
	return nil
}

// Get removes and returns the oldest message, waiting while the queue is
// empty. Once the queue is closed and drained it returns [io.EOF]; if ctx
// is done first, ctx.Err() with the queue unchanged. The returned slice is
// the caller's.
func (q *Queue) Get(ctx context.Context) ([]byte, error) {
	var out []byte
	_, _, err := q.get(ctx, nil, &out, true, false)
	return out, err
}

// GetInto is Get that copies the message into buf and returns its length,
// without allocating. If buf is too short it returns the message's length
// and [io.ErrShortBuffer], leaving the message in the queue.
func (q *Queue) GetInto(ctx context.Context, buf []byte) (int, error) {
	n, _, err := q.get(ctx, buf, nil, true, false)
	return n, err
}

// TryGet returns the oldest message if there is one now: ok is false when
// the queue is empty (or another consumer holds the consumer lock a
// moment). A closed, drained queue returns [io.EOF].
func (q *Queue) TryGet() (msg []byte, ok bool, err error) {
	_, ok, err = q.get(context.Background(), nil, &msg, false, false)
	return msg, ok, err
}

// TryGetInto is TryGet into buf; see [Queue.GetInto].
func (q *Queue) TryGetInto(buf []byte) (n int, ok bool, err error) {
	return q.get(context.Background(), buf, nil, false, false)
}

// ready is Get's common case, checked first under the consumer lock: the
// record at head h is a committed message that fits buf (or goes to a
// new *out); it returns its length. In every other case (empty, padding,
// a corrupt word, a short buf) it reports false and the rest of get
// decides. It builds no error and indexes nothing, so that the common
// case stays short.
func (q *Queue) ready(h uint64, buf []byte, out *[]byte) (int, bool) {
	if h&7 != 0 {
		return 0, false
	}
	w := q.hdr(h).Load()
	l := w & lenMask
	ok := w&^(1<<32-1) == tagOf(h) && w&(flagCommit|flagPadding) == flagCommit &&
		msgFits(h, l, q.cap, q.maxMsg) && (out != nil || int(l) <= len(buf))
	return int(l), ok
}

// get takes one message into buf, or into a new *out if out != nil. A
// message longer than buf stays in the queue (io.ErrShortBuffer), or with
// discard is taken without being copied (its length says so).
//
// A consumer waits for data holding the consumer lock: the other consumers
// could not take anything anyway, and with the lock held, head cannot move
// under the waiter, so the word it polls is always the next record's header
// (never payload that a producer is writing a lap later).
func (q *Queue) get(ctx context.Context, buf []byte, out *[]byte, block, discard bool) (int, bool, error) {
	if err := q.check(); err != nil {
		return 0, false, err
	}
	if err := q.lockConsumers(ctx, block); err != nil {
		if errors.Is(err, errBusy) {
			return 0, false, nil
		}
		return 0, false, err
	}
	for {
		h := q.head.Load()
		if n, ok := q.ready(h, buf, out); ok {
			return q.take(h, n, buf, out), true, nil
		}
		if h&7 != 0 {
			q.clock.unlock()
			return 0, false, fmt.Errorf("%w: head %d", ErrCorrupt, h)
		}
		hw := q.hdr(h)
		kind, n, err := decodeHeader(hw.Load(), h, q.cap, q.maxMsg)
		if err != nil {
			q.clock.unlock()
			return 0, false, err
		}
		switch kind {
		case recPadding:
			q.head.Store(h + hdrSize + uint64(n))
			continue
		case recEmpty:
			if q.closed.Load() != 0 {
				// Close happened after every Put that committed before
				// it: one more look settles whether anything is left.
				if hw.Load() == 0 {
					q.clock.unlock()
					return 0, false, io.EOF
				}
				continue
			}
			q.publish(h)
			if !block {
				q.clock.unlock()
				return 0, false, nil
			}
			ready := func() bool { return hw.Load() != 0 || q.closed.Load() != 0 }
			if q.getSpin.maxNs.Load() > 0 { // pausing is spinning
				q.pace.wait()
			}
			if ok, start := q.getSpin.spin(ready); !ok {
				if err := sleep(ctx, q.dataFx, q.waits, ready); err != nil {
					q.clock.unlock()
					return 0, false, err
				}
				if ready() {
					q.getSpin.slept(start)
				} else if q.plock.recoverDead(q.me) {
					// A long sleep, and a producer died inside Put.
					err := q.repairProducer()
					q.plock.unlock()
					if err != nil {
						q.clock.unlock()
						return 0, false, err
					}
				}
			}
			continue
		}
		if out == nil && n > len(buf) {
			if !discard {
				q.clock.unlock()
				return n, false, io.ErrShortBuffer
			}
			buf = nil // taken without being copied
		}
		return q.take(h, n, buf, out), true, nil
	}
}

// take copies the n-byte message at head h into buf (or a new *out, if out
// is not nil), removes it, and releases the consumer lock. The caller has
// validated the record; buf may be shorter than n only to discard it.
func (q *Queue) take(h uint64, n int, buf []byte, out *[]byte) int {
	src := unsafe.Slice((*byte)(q.at(h&q.mask+hdrSize)), n)
	if out != nil {
		*out = append([]byte(nil), src...)
	} else {
		copy(buf, src)
	}
	if q.fault != nil {
		q.fault("get")
	}
	// Take the message (head), publish freed if due, unlock, then fence
	// (the add) before looking at the futex words. The sleeper bit of
	// spaceFx must be loaded after the fence, never before: a load before
	// it may pass the head store still in this CPU's store buffer, while a
	// producer sets the bit and re-reads the old head, and then nobody
	// wakes it (a lost wake-up).
	h += recLen(n)
	release.Store64(q.head, h)
	if h-q.freed.Load() >= q.pubEvery {
		release.Store64(q.freed, h)
	}
	q.pace.took++
	q.clock.unlockRel()
	q.gets.Add(1)
	q.clock.wakeWaiters()
	wake(q.spaceFx)
	return n
}

// publish stores h in freed now, for producers spinning on it, and wakes
// sleeping producers (the consumer is about to wait). Under the consumer
// lock. A release store is enough: a sleeping producer re-checks head
// itself, which take stored before its fence.
func (q *Queue) publish(h uint64) {
	if q.freed.Load() != h {
		release.Store64(q.freed, h)
	}
	wake(q.spaceFx)
}

// lockConsumers takes the consumer lock (block) or tries to; errBusy
// means the lock is busy in try mode.
func (q *Queue) lockConsumers(ctx context.Context, block bool) error {
	if q.clock.tryLock(q.me) {
		return nil
	}
	if !block {
		if q.clock.recoverDead(q.me) {
			q.cdead.Add(1)
			return nil
		}
		return errBusy
	}
	rec, err := q.clock.lock(ctx, q.me, q.waits)
	if rec {
		q.cdead.Add(1)
	}
	return err
}

// Len returns the number of messages in the queue (a snapshot).
func (q *Queue) Len() int {
	if q.check() != nil {
		return 0
	}
	g := q.gets.Load()
	p := q.puts.Load()
	if p < g {
		return 0
	}
	return int(p - g)
}

// Stats are a queue's counters, shared by every process using it.
type Stats struct {
	Puts    uint64 // messages committed by Put
	Gets    uint64 // messages taken by Get
	Dropped uint64 // messages lost because their producer died inside Put
	// ConsumerDeaths counts consumer locks taken over from a consumer that
	// died inside Get (each cost at most the one message it was taking).
	ConsumerDeaths uint64
	Waits          uint64 // futex sleeps (spins that did not suffice)
}

// Stats returns the queue's counters. It also notices a producer that
// died inside Put (and counts its message in Dropped); on a corrupt queue
// it only reads the counters.
func (q *Queue) Stats() Stats {
	if q.check() != nil {
		return Stats{}
	}
	if q.plock.recoverDead(q.me) {
		q.repairProducer()
		q.plock.unlock()
	}
	return Stats{
		Puts: q.puts.Load(), Gets: q.gets.Load(), Dropped: q.dropped.Load(),
		ConsumerDeaths: q.cdead.Load(), Waits: q.waits.Load(),
	}
}

// Shutdown closes the queue for every process: Put then returns [ErrShutdown],
// Get drains what is left and then returns [io.EOF], and every waiter in
// every process is woken. It is safe to call twice. It does not release
// this handle's mapping: see [Queue.Close].
func (q *Queue) Shutdown() error {
	if err := q.check(); err != nil {
		return err
	}
	// Under the producer lock, so that every Put either committed before
	// Close or sees closed. A corrupt queue is closed all the same (no Put
	// can commit on it), and Close reports the corruption.
	err := q.lockProducers(context.Background(), true)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return err
	}
	q.closed.Store(1)
	if err == nil {
		q.plock.unlock()
	}
	wakeAll(q.dataFx)
	wakeAll(q.spaceFx)
	return err
}

// IsShutdown reports whether the queue has been closed.
func (q *Queue) IsShutdown() bool { return q.check() == nil && q.closed.Load() != 0 }

// Close releases this handle's mapping; the queue stays open for every
// other handle and process (and a named queue's file stays: see [Remove]).
// It is safe to call twice; the handle must not be in use by other
// goroutines, and any later call returns [os.ErrClosed].
func (q *Queue) Close() error {
	if q.detached.Swap(true) {
		return nil
	}
	return q.seg.Close()
}

// noCopy makes go vet's copylocks check report copies.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
