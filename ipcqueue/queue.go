package ipcqueue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ipckit/ipckit/internal/release"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// Options configures the creation of a queue: what is fixed for the
// queue's life. A nil *Options, like the zero Options, means the defaults.
// The constructors only read it, during the call: it may be shared and
// reused. What each handle may set for itself is a method of [Queue]
// ([Queue.SetSpin]).
type Options struct {
	// MaxMsg is the maximum message size in bytes, fixed when the queue is
	// created. The default is a quarter of the ring, at most 1 MiB; the
	// limit is a little under half the ring (a record and the padding
	// before it must fit). Out of range is an error wrapping
	// [os.ErrInvalid].
	MaxMsg int

	// Mode is the permission of a named queue's file (default 0600). It
	// applies to named queues ([Create]) only: an anonymous or heap queue
	// has no file, and [New] and [NewHeap] do not use it.
	Mode os.FileMode
}

// Queue is a handle to a bounded MPMC queue of byte messages in shared
// memory. Get one from [New], [NewHeap], [Create], [Open] or by gob-decoding
// a handle (see [Queue.GobDecode]). The zero Queue is a closed handle:
// every call on it returns an error wrapping [os.ErrClosed].
//
// A Queue is safe for concurrent use by any number of goroutines, and its
// queue by any number of processes, each through its own handle. That
// includes [Queue.Close]: it makes calls blocked on this handle return an
// error wrapping [os.ErrClosed], and releases the mapping only once no call
// on the handle is in progress. A Queue must not be copied (go vet catches
// copies): pass the pointer.
//
// Slices: [Queue.Put] does not retain msg. [Queue.Get] returns a new slice
// that belongs to the caller (the queue never touches it again, and it
// outlives Close); [Queue.GetInto] copies into the caller's buffer. No call
// returns memory of the ring.
type Queue struct {
	_ noCopy

	seg    *shm.Segment
	ctl    []byte         // control block
	ring   []byte         // the ring, size bytes
	base   unsafe.Pointer // &ring[0]
	size   uint64         // the ring's size R (a power of two); Capacity is R-8
	mask   uint64
	maxMsg uint64

	plock, clock *robust.Lock
	tail, head   *atomic.Uint64
	freed        *atomic.Uint64
	puts, gets   *atomic.Uint64
	dropped      *atomic.Uint64
	claim        *atomic.Uint64
	claimN       *atomic.Uint64
	reserved     *atomic.Uint64
	reading      *atomic.Uint64
	cdead        *atomic.Uint64
	waits        *atomic.Uint64
	shut         *atomic.Uint32
	dataFx       *atomic.Uint32
	spaceFx      *atomic.Uint32

	pubEvery uint64 // consumers publish freed every pubEvery bytes

	// Lifetime of this handle: see guard.go. open and fenced are read by
	// every call, and written only by attach and Close. closer ends this
	// handle's sleeps (on the locks and in waits) at Close.
	open      atomic.Bool // true from attach until Close
	fenced    bool        // pinned calls fence their entry (no membarrier)
	closer    robust.Closer
	closeOnce sync.Once
	closeErr  error

	// The fields written as calls go sit apart, with the pads' 128 bytes
	// (two cache lines, which the adjacent-line prefetcher fetches in
	// pairs) between them and everything else: a producer and a consumer
	// goroutine sharing this handle would otherwise bounce one line between
	// their cores on every message.
	_ [128]byte

	// calls counts the counted calls in progress (guard.go): the slow paths
	// of both sides write it.
	calls atomic.Int64
	_     [128]byte

	// cachedHead is a lower bound of head, read and written only under the
	// producer lock, so a producer loads the shared freed (or head) only
	// when the ring looks full.
	cachedHead uint64
	putSpin    robust.Spinner
	// claimSeq numbers this handle's claims (batch.go): odd while the
	// claim it names is open. Written by Reserve under the producer lock
	// and by the CAS of Commit or Abort.
	claimSeq atomic.Uint64
	_        [128]byte
	pace     pacer // under the consumer lock
	getSpin  robust.Spinner
	_        [128]byte

	faults faults
}

// faults are test hooks, bbolt's db.ops style: nil in production. A test
// helper process sets one to kill itself at that point of a call.
type faults struct {
	// putCopied runs inside Put after the record's payload is written and
	// before it is committed.
	putCopied func()
	// getCopied runs inside Get after the message is copied out and before
	// it is taken.
	getCopied func()
	// skipWake, if it returns true, makes a Put or a Get skip the wake-up
	// it owes a sleeper: a lost wake-up, for the test that must see one.
	skipWake func() bool
	// batchStep runs inside PutBatch at each step of batchStep's list
	// (batch.go), with the step's number.
	batchStep func(step int)
	// tryRetry runs in a Try call each time it finds a lock busy and goes
	// on waiting for the holder ("Try calls" in batch.go).
	tryRetry func()
	// tryGaveUp runs in a Try call that gives up on a holder making no
	// progress (the third exception of "Try calls"), before it reports.
	tryGaveUp func()
	// repairStep runs inside repairProducer at each step of its list
	// (repairTail...), with the step's number.
	repairStep func(step int)
	// tryPatience, if not 0, replaces tryPatience.
	tryPatience time.Duration
}

// ringFor rounds size up to a power of two, at least minRing.
func ringFor(size int) (uint64, error) {
	if size <= 0 || size > maxRing {
		return 0, fmt.Errorf("ipcqueue: size %d, want 1 to %d: %w", size, uint64(maxRing), os.ErrInvalid)
	}
	r := uint64(1) << bits.Len64(uint64(size-1))
	return max(r, minRing), nil
}

func (o *Options) config(size int) (config, error) {
	r, err := ringFor(size)
	if err != nil {
		return config{}, err
	}
	m := min(r/4, 1<<20, maxMsgFor(r))
	if o != nil && o.MaxMsg != 0 {
		if o.MaxMsg < 0 || uint64(o.MaxMsg) > maxMsgFor(r) {
			return config{}, fmt.Errorf("ipcqueue: maximum message %d for a %d-byte ring, want 1 to %d: %w", o.MaxMsg, r, maxMsgFor(r), os.ErrInvalid)
		}
		m = uint64(o.MaxMsg)
	}
	return config{ring: r, maxMsg: m}, nil
}

// build creates a queue of size bytes (rounded up to a power of two) in a
// new segment made by mk(n, fill), which must call fill on the segment
// before anyone else can reach it: fill writes the control block.
func build(size int, opts *Options, mk func(n int, fill func(*shm.Segment) error) (*shm.Segment, error)) (*Queue, error) {
	c, err := opts.config(size)
	if err != nil {
		return nil, err
	}
	seg, err := mk(ctlSize+int(c.ring), func(seg *shm.Segment) error {
		writeConfig(seg.Bytes(), c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	q, err := attach(seg)
	if err != nil {
		return nil, fmt.Errorf("ipcqueue: %w", err)
	}
	return q, nil
}

// New makes a queue in an anonymous segment: it reaches other processes
// only as an argument of a child started by spawn, and its memory is freed
// when the last process using it exits. The ring is size bytes rounded up
// to a power of two (at least 64); messages can use [Queue.Capacity] of
// them, 8 fewer. A size out of range, like a bad opts.MaxMsg, is an error
// wrapping [os.ErrInvalid]. opts.Mode does not apply.
func New(size int, opts *Options) (*Queue, error) {
	return build(size, opts, private(shm.KindQueue.CreateAnonymous))
}

// private adapts mk, which makes a segment that nobody else can reach
// until it is passed on (anonymous, or on the heap), to build: the
// control block is written after mk, before the segment leaves build.
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

// NewHeap makes a queue as [New] does, on the Go heap: for one process
// only, where the race detector sees every access. opts.Mode does not
// apply.
func NewHeap(size int, opts *Options) (*Queue, error) {
	return build(size, opts, private(shm.KindQueue.NewHeap))
}

// Create makes a new named queue, of size bytes as [New] does; it fails
// with an error wrapping [os.ErrExist] if the name is taken. Remove it with
// [Remove].
func Create(name string, size int, opts *Options) (*Queue, error) {
	var so *shm.Options
	if opts != nil {
		so = &shm.Options{Mode: opts.Mode}
	}
	// The control block is written before the segment has its name: an
	// Open racing this finds the queue whole or finds no name.
	return build(size, opts, func(n int, fill func(*shm.Segment) error) (*shm.Segment, error) {
		return shm.KindQueue.CreateInit(name, n, so, fill)
	})
}

// Open attaches to the named queue made by [Create], after validating its
// layout (an invalid one is [ErrCorrupt]). The handle spins with
// [DefaultSpin]; see [Queue.SetSpin].
func Open(name string) (*Queue, error) {
	seg, err := shm.KindQueue.Open(name)
	if err != nil {
		return nil, err
	}
	q, err := attach(seg)
	if err != nil {
		return nil, fmt.Errorf("ipcqueue: open %q: %w", name, err)
	}
	return q, nil
}

// Remove deletes the named queue's file; handles keep working until they
// are closed.
func Remove(name string) error { return shm.Remove(name) }

// attach validates seg's control block and returns a handle that owns seg
// (closing seg if it fails).
func attach(seg *shm.Segment) (*Queue, error) {
	q := new(Queue)
	if err := q.attachTo(seg); err != nil {
		seg.Close()
		return nil, err
	}
	return q, nil
}

// attachTo fills the zero handle q for the queue in seg, and opens it.
func (q *Queue) attachTo(seg *shm.Segment) error {
	b := seg.Bytes()
	c, err := readConfig(b)
	if err != nil {
		return err
	}
	end := ctlSize + int(c.ring)
	plock, clock, err := newLocks(b[:ctlSize:ctlSize], &q.closer)
	if err != nil {
		return err
	}
	q.plock, q.clock = plock, clock
	q.seg, q.ctl, q.ring = seg, b[:ctlSize:ctlSize], b[ctlSize:end:end]
	q.base = unsafe.Pointer(&q.ring[0])
	q.size, q.mask, q.maxMsg = c.ring, c.ring-1, c.maxMsg
	q.pubEvery = c.ring / 8
	q.tail, q.head = u64At(q.ctl, offTail), u64At(q.ctl, offHead)
	q.freed = u64At(q.ctl, offFreed)
	q.puts, q.gets = u64At(q.ctl, offPuts), u64At(q.ctl, offGets)
	q.dropped, q.cdead = u64At(q.ctl, offDropped), u64At(q.ctl, offCDead)
	q.claim, q.claimN = u64At(q.ctl, offClaim), u64At(q.ctl, offClaimN)
	q.reserved, q.reading = u64At(q.ctl, offReserved), u64At(q.ctl, offReading)
	q.waits = u64At(q.ctl, offWaits)
	q.shut = u32At(q.ctl, offShutdown)
	q.dataFx, q.spaceFx = u32At(q.ctl, offDataFx), u32At(q.ctl, offSpaceFx)
	q.cachedHead = q.freed.Load()
	q.SetSpin(0)
	q.fenced = !haveMembarrier()
	q.open.Store(true)
	return nil
}

// SetSpin sets this handle's longest spin before sleeping on a futex, for
// both Put (queue full) and Get (queue empty): d == 0 means [DefaultSpin],
// d < 0 never spin (pure futex waits). The budget adapts below this bound
// (see wait.go). It affects this handle only, and may be called at any
// time, concurrently with other calls.
func (q *Queue) SetSpin(d time.Duration) {
	q.putSpin.SetMax(d)
	q.getSpin.SetMax(d)
}

// Capacity returns how many bytes of messages the queue holds (see the
// package doc, "Capacity"): the ring's size less 8, 0 on the zero Queue. A
// message costs its length rounded up to 8, plus 8, and the padding before
// a message that would cross the end of the ring counts too. So messages
// of one cost c that is a power of two fit exactly Capacity/c at a time,
// wherever the ring's indices stand; messages of any costs always fit in an
// empty queue when their costs, plus the largest cost less 8 (the most a
// padding can take), add up to at most Capacity.
func (q *Queue) Capacity() int {
	if q.size == 0 {
		return 0
	}
	return int(q.size - hdrSize)
}

// MaxMsg returns the largest message the queue accepts.
func (q *Queue) MaxMsg() int { return int(q.maxMsg) }

// Segment returns the segment the queue lives in. It is closed with the
// handle.
func (q *Queue) Segment() *shm.Segment { return q.seg }

// hdr returns the header word at position p (8-aligned: in bounds).
func (q *Queue) hdr(p uint64) *atomic.Uint64 { return (*atomic.Uint64)(q.at(p & q.mask)) }

// at is the address of ring offset off (< the ring's size), without a bounds
// check: the hot paths index the ring only at offsets they have masked or
// validated.
func (q *Queue) at(off uint64) unsafe.Pointer { return unsafe.Add(q.base, off) }

// Put appends msg to the queue, waiting while it is full. It returns
// [ErrTooLarge] (nothing written) for a message over [Queue.MaxMsg],
// [ErrShutdown] once the queue is shut down, ctx.Err() (nothing written) if
// ctx is done first, and an error wrapping [os.ErrClosed] once this handle
// is closed (also to a Put waiting when [Queue.Close] is called). Put does
// not retain msg.
func (q *Queue) Put(ctx context.Context, msg []byte) error {
	_, err := q.putCall(ctx, msg, true)
	return err
}

// TryPut appends msg if there is room now. false, nil means the queue had
// no room for msg at some instant during the call, or a [Claim] held the
// producer side then; while another Put merely holds the producer lock,
// TryPut waits for it rather than report full. Its errors are Put's.
func (q *Queue) TryPut(msg []byte) (bool, error) {
	return q.putCall(context.Background(), msg, false)
}

func (q *Queue) putCall(ctx context.Context, msg []byte, block bool) (bool, error) {
	c, err := q.enter()
	if err != nil {
		return false, err
	}
	ok := q.putFast(&c, msg)
	if !ok {
		ok, err = q.put(ctx, &c, msg, block)
	}
	c.leave()
	return ok, err
}

// putFast is Put's common case: the producer lock is free, the queue open,
// the message short (pinnedCopy), and the record fits before the ring's
// end within the cached free space. In every other case it changes
// nothing and reports false, and the general path (put) decides. It has
// no loop and no error to build, and indexes the ring without bounds
// checks at offsets it has validated (BENCHMARKS.md, "ipcqueue: figures
// moved from code comments").
func (q *Queue) putFast(c *call, msg []byte) bool {
	n := uint64(len(msg))
	if n > q.maxMsg || n > pinnedCopy || !q.plock.TryLockFree() {
		return false
	}
	t := q.tail.Load()
	pad, end := q.place(t, recLen(int(n)))
	if t&7 != 0 || end+hdrSize-q.cachedHead > q.size || q.shut.Load() != 0 {
		c.count() // unlock may wake a sleeper: a system call
		q.plock.Unlock()
		return false
	}
	q.write(c, t, pad, msg)
	return true
}

// place returns where a record of L bytes goes at tail t: after pad bytes
// of padding (0, or the rest of the ring if it would cross the ring's
// end), ending at end.
func (q *Queue) place(t, L uint64) (pad, end uint64) {
	if off := t & q.mask; off+L > q.size {
		pad = q.size - off
	}
	return pad, t + pad + L
}

// put is Put's general path: c becomes counted.
func (q *Queue) put(ctx context.Context, c *call, msg []byte, block bool) (bool, error) {
	c.count()
	if uint64(len(msg)) > q.maxMsg {
		return false, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(msg), q.maxMsg)
	}
	L := recLen(len(msg))
	t, ok, err := q.acquire(ctx, block, span{single: L})
	if !ok {
		return false, err
	}
	pad, _ := q.place(t, L)
	q.write(c, t, pad, msg)
	return true, nil
}

// span is what a producer needs room for: one record of single bytes, or
// (single == 0) the records of batch.
type span struct {
	single uint64
	batch  *batch
}

// end returns where the records of s end if they are written from tail t.
func (q *Queue) end(t uint64, s span) uint64 {
	if s.single != 0 {
		_, end := q.place(t, s.single)
		return end
	}
	return q.batchEnd(t, s.batch)
}

// acquire takes the producer lock with room after tail for s (and the
// terminator after it), waiting for room if block, and returns tail with
// the lock held. ok false with a nil error means full (or, for a try, the
// lock held by a claim: see "Try calls" in batch.go); with an error, the
// lock is not held. The caller's call is counted.
func (q *Queue) acquire(ctx context.Context, block bool, s span) (t uint64, ok bool, err error) {
	exact := false // check head itself, not only freed
	var wait patience
	for {
		if !q.open.Load() {
			return 0, false, errClosed
		}
		if err := q.lockProducers(ctx, block); err != nil {
			if !errors.Is(err, errBusy) {
				return 0, false, err
			}
			if q.reserved.Load() != 0 || q.fullNow(s) || !q.keep(&wait, q.plock, q.tail) {
				return 0, false, nil
			}
			runtime.Gosched() // a Put holds the lock a moment: try again
			continue
		}
		if q.shut.Load() != 0 {
			q.plock.Unlock()
			return 0, false, ErrShutdown
		}
		t = q.tail.Load()
		if t&7 != 0 {
			q.plock.Unlock()
			return 0, false, fmt.Errorf("ipcqueue: tail %d: %w", t, ErrCorrupt)
		}
		end := q.end(t, s)
		if end+hdrSize-q.cachedHead > q.size {
			// Full by the cached head: look at freed; at head itself only
			// for TryPut or after spinning on freed failed, so a producer
			// on a full ring does not poll the line consumers write on
			// every message.
			if err := q.refreshHead(t, q.freed); err != nil {
				return 0, false, err
			}
			if end+hdrSize-q.cachedHead > q.size && (exact || !block) {
				if err := q.refreshHead(t, q.head); err != nil {
					return 0, false, err
				}
			}
		}
		if end+hdrSize-q.cachedHead <= q.size {
			return t, true, nil
		}
		q.plock.Unlock()
		if !block {
			return 0, false, nil
		}
		if err := q.waitRoom(ctx, end, &exact); err != nil {
			return 0, false, err
		}
	}
}

// waitRoom waits, without the producer lock, until the ring has room up to
// end (and its terminator) by freed, by spinning, or else by head, by
// sleeping (then *exact becomes true); or until the queue is shut down or
// the handle closed (the caller looks again).
func (q *Queue) waitRoom(ctx context.Context, end uint64, exact *bool) error {
	// The difference is signed: other producers may have written, and
	// consumers taken, past end by the time this one looks.
	room := func(h uint64) bool { return int64(end+hdrSize-h) <= int64(q.size) }
	lazyReady := func() bool {
		return room(q.freed.Load()) || q.shut.Load() != 0 || !q.open.Load()
	}
	exactReady := func() bool {
		return room(q.head.Load()) || q.shut.Load() != 0 || !q.open.Load()
	}
	ok, start := q.putSpin.Spin(lazyReady)
	if ok {
		return nil
	}
	*exact = true
	if err := q.waitSpace(ctx, exactReady); err != nil {
		return err
	}
	if exactReady() {
		q.putSpin.Slept(start)
	}
	return nil
}

// fullNow reports whether the queue had no room for s at one instant: a
// tail and a head that were current together (head read on both sides of
// tail, unchanged). Without the producer lock; false when it cannot tell.
func (q *Queue) fullNow(s span) bool {
	h := q.head.Load()
	t := q.tail.Load()
	if q.head.Load() != h || t&7 != 0 {
		return false
	}
	return q.end(t, s)+hdrSize-h > q.size
}

// write puts msg at tail t, after pad bytes of padding (0, or the rest of
// the ring), under the producer lock, which it releases. The caller has
// checked that the record and the terminator after it fit.
func (q *Queue) write(c *call, t, pad uint64, msg []byte) {
	// Claim (for a repairer, should this process die before it publishes
	// tail) and write the terminator, then the payload, and the record's
	// header (and the padding before it, committed last: the header word
	// at tail is the one commit, see batch.go). Only a repairer reads
	// claim, after this process is dead: its death orders the store, which
	// is atomic all the same (a release store), as is every store to a
	// word that another process loads.
	p := t + pad
	end := p + recLen(len(msg))
	q.claimRoom(end, 1)
	copy(unsafe.Slice((*byte)(q.at(p&q.mask+hdrSize)), len(msg)), msg)
	if q.faults.putCopied != nil {
		c.count()
		q.faults.putCopied()
	}
	// Commit (release stores: the consumer's atomic load of the header
	// pairs with them), then publish tail, unlock and fence (published).
	q.commit(t, p, len(msg))
	q.published(c, end, 1)
}

// wakeAfter wakes the sleepers of lock l and of fx, if either has any: the
// end of a Put or a Get, after its fence. Loading the two words decides,
// as the same loads inside Lock.WakeWaiters and robust.Wake would (a
// sleeper that sets its bit after them re-checks the queue before it
// sleeps, see wait.go); only if a bit is set does c become counted, for
// the system call.
func (q *Queue) wakeAfter(c *call, l *robust.Lock, fx *atomic.Uint32) {
	if (l.Sleepers().Load()|fx.Load())&1 != 0 {
		if q.faults.skipWake != nil && q.faults.skipWake() {
			return
		}
		c.count()
		l.WakeWaiters()
		robust.Wake(fx)
	}
}

// refreshHead sets cachedHead from w (freed or head), under the producer
// lock with tail t; on an impossible value it unlocks and returns ErrCorrupt.
// (freed may lag head by up to about pubEvery plus a record and a padding.)
func (q *Queue) refreshHead(t uint64, w *atomic.Uint64) error {
	h := w.Load()
	limit := q.size
	if w == q.freed {
		limit = 2 * q.size
	}
	if t-h > limit || t&7 != 0 || h&7 != 0 {
		q.plock.Unlock()
		return fmt.Errorf("ipcqueue: tail %d, head %d, ring of %d bytes: %w", t, h, q.size, ErrCorrupt)
	}
	q.cachedHead = h
	return nil
}

// repairProducer runs with the producer lock taken over from a dead
// holder. If the holder's claim is not beyond tail, it had published its
// records (it died before unlocking; they are in the queue, though not
// counted in puts), or it died before it began to write (nothing entered
// the queue): nothing to do. Otherwise it looks at the header word at
// tail, the one store that publishes a record or a whole batch (every
// other header of it is stored before): committed, the holder's claimN
// messages are all in the queue, and tail moves to the claim's end;
// still 0 (or impossible), none is, and the claimN messages count as
// dropped. An impossible tail or claim is ErrCorrupt (the lock stays held:
// the caller releases it).
func (q *Queue) repairProducer() error {
	release.Store64(q.reserved, 0)
	t := q.tail.Load()
	if t&7 != 0 {
		return fmt.Errorf("ipcqueue: tail %d: %w", t, ErrCorrupt)
	}
	c := q.claim.Load()
	if int64(c-t) <= 0 {
		robust.Wake(q.dataFx)
		return nil
	}
	if c-t > q.size || c&7 != 0 {
		return fmt.Errorf("ipcqueue: claim %d, tail %d, ring of %d bytes: %w", c, t, q.size, ErrCorrupt)
	}
	n := q.claimN.Load()
	kind, _, err := decodeHeader(q.hdr(t).Load(), t, q.size, q.maxMsg)
	if err == nil && kind != recEmpty {
		q.tail.Store(c)
		q.repairStep(repairTail)
		q.puts.Add(n)
	} else {
		// Idempotent, should this repairer die too: dropped changes only
		// here, under the producer lock, so the value it is to reach is
		// stored first (in claimN) and then stored, never added twice;
		// claim back at tail then says nothing is left to repair.
		target := n &^ claimDropping
		if n&claimDropping == 0 {
			target += q.dropped.Load()
			release.Store64(q.claimN, claimDropping|target)
			q.repairStep(repairMarked)
		}
		release.Store64(q.dropped, target)
		q.repairStep(repairCounted)
		release.Store64(q.claim, t)
	}
	robust.Wake(q.dataFx)
	return nil
}

// claimDropping marks claimN as holding, below it, the value of dropped
// that a repair which drops the dead holder's messages is to store.
const claimDropping = 1 << 63

// The steps of repairProducer, at which a test's faults.repairStep runs.
const (
	repairTail    = iota // committed: tail stored, puts not yet added to
	repairMarked         // not committed: claimN holds dropped's target
	repairCounted        // not committed: dropped stored, claim not yet
)

// repairStep runs the repairStep fault hook, if any, at step s.
func (q *Queue) repairStep(s int) {
	if q.faults.repairStep != nil {
		q.faults.repairStep(s)
	}
}

// Get removes and returns the oldest message, waiting while the queue is
// empty. Once the queue is shut down and drained it returns [io.EOF]; if
// ctx is done first, ctx.Err() with the queue unchanged; once this handle
// is closed (also to a Get waiting when [Queue.Close] is called), an error
// wrapping [os.ErrClosed]. The returned slice is new and the caller's.
func (q *Queue) Get(ctx context.Context) ([]byte, error) {
	var out []byte
	_, _, err := q.get(ctx, nil, &out, true, false)
	return out, err
}

// GetInto is Get that copies the message into buf and returns its length,
// without allocating; the queue keeps nothing of buf. If buf is too short
// it returns the message's length and [io.ErrShortBuffer], leaving the
// message in the queue.
func (q *Queue) GetInto(ctx context.Context, buf []byte) (int, error) {
	n, _, err := q.get(ctx, buf, nil, true, false)
	return n, err
}

// TryGet returns the oldest message if there is one now. ok false means
// the queue was empty at some instant during the call, or another consumer
// was inside [Queue.Read]'s fn then (holding the consumer lock for as long
// as its code runs); while another Get merely holds the consumer lock,
// even asleep on an empty queue that a message has since reached, TryGet
// waits for it (waking it if need be) rather than report empty. A shut
// down, drained queue returns [io.EOF]. Its other errors are Get's.
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
		msgFits(h, l, q.size, q.maxMsg) && (out != nil || int(l) <= len(buf))
	return int(l), ok
}

// get takes one message into buf, or into a new *out if out != nil. A
// message longer than buf stays in the queue (io.ErrShortBuffer), or with
// discard is taken without being copied (its length says so).
func (q *Queue) get(ctx context.Context, buf []byte, out *[]byte, block, discard bool) (int, bool, error) {
	c, err := q.enter()
	if err != nil {
		return 0, false, err
	}
	n, ok, err := q.getWith(ctx, &c, buf, out, block, discard)
	c.leave()
	return n, ok, err
}

// getWith is get within call c. Its fast path takes a ready message of at
// most pinnedCopy bytes while c may still be pinned; anything else makes c
// counted first.
func (q *Queue) getWith(ctx context.Context, c *call, buf []byte, out *[]byte, block, discard bool) (int, bool, error) {
	if q.clock.TryLockFree() {
		h := q.head.Load()
		if n, ok := q.ready(h, buf, out); ok && n <= pinnedCopy {
			return q.take(c, h, n, buf, out), true, nil
		}
		c.count()
	} else {
		c.count()
		if ok, err := q.lockConsumersFor(ctx, block); !ok {
			return 0, false, err
		}
	}
	return q.getLocked(ctx, c, buf, out, block, discard)
}

// lockConsumersFor takes the consumer lock for a Get or a Read (block) or
// a try, which keeps the strict promise ("Try calls" in batch.go): while
// another consumer holds the lock, it reports false only once it has seen
// the queue empty, or that consumer inside Read's fn; otherwise it tries
// again, first waking the holder should it be asleep on the empty queue
// while a message waits. ok false with a nil error: empty (try mode).
func (q *Queue) lockConsumersFor(ctx context.Context, block bool) (bool, error) {
	var wait patience
	for {
		err := q.lockConsumers(ctx, block)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, errBusy) {
			return false, err
		}
		if q.reading.Load() != 0 || q.emptyNow() || !q.keep(&wait, q.clock, q.head) {
			return false, nil
		}
		robust.Wake(q.dataFx)
		runtime.Gosched()
	}
}

// emptyNow reports whether the queue was empty at one instant: the header
// word at head was 0 while head, read on both sides of it, stayed the
// same. Without the consumer lock; false when it cannot tell. It reads the
// word only if tail was at head too: then no producer writes payload
// there (records go after tail, within a lap of head), only header words,
// atomically; a head that moved on may stand on payload being written
// (a plain copy the race detector would rightly report, however harmless
// the discarded load). A tail beyond head means records were published.
func (q *Queue) emptyNow() bool {
	h := q.head.Load()
	if q.tail.Load() != h || h&7 != 0 {
		return false
	}
	w := q.hdr(h).Load()
	return w == 0 && q.head.Load() == h
}

// getLocked is get's general path, holding the consumer lock (which it
// releases) within the counted call c.
func (q *Queue) getLocked(ctx context.Context, c *call, buf []byte, out *[]byte, block, discard bool) (int, bool, error) {
	h, n, ok, err := q.next(ctx, block)
	if !ok {
		return 0, false, err
	}
	if out == nil && n > len(buf) {
		if !discard {
			q.clock.Unlock()
			return n, false, io.ErrShortBuffer
		}
		buf = nil // taken without being copied
	}
	return q.take(c, h, n, buf, out), true, nil
}

// next finds the message at head, holding the consumer lock within a
// counted call, and returns its position and length with the lock still
// held (ok). It skips paddings (storing head past them), and waits while
// the queue is empty if block. Otherwise it releases the lock: with a nil
// error when the queue is empty (try mode), else io.EOF (shut down and
// drained), ctx.Err(), errClosed or ErrCorrupt.
//
// A consumer waits for data holding the consumer lock: the other consumers
// could not take anything anyway, and with the lock held, head cannot move
// under the waiter, so the word it polls is always the next record's header
// (never payload that a producer is writing a lap later).
func (q *Queue) next(ctx context.Context, block bool) (h uint64, n int, ok bool, err error) {
	followed := false // the consumer lock's sleepers were woken to follow us
	for {
		if !q.open.Load() {
			q.clock.Unlock()
			return 0, 0, false, errClosed
		}
		h := q.head.Load()
		if h&7 != 0 {
			q.clock.Unlock()
			return 0, 0, false, fmt.Errorf("ipcqueue: head %d: %w", h, ErrCorrupt)
		}
		hw := q.hdr(h)
		kind, n, err := decodeHeader(hw.Load(), h, q.size, q.maxMsg)
		if err != nil {
			q.clock.Unlock()
			return 0, 0, false, err
		}
		switch kind {
		case recMessage:
			return h, n, true, nil
		case recPadding:
			q.head.Store(h + hdrSize + uint64(n))
			continue
		}
		if q.shut.Load() != 0 {
			// Shutdown happened after every Put that committed before
			// it: one more look settles whether anything is left.
			if hw.Load() == 0 {
				q.clock.Unlock()
				return 0, 0, false, io.EOF
			}
			continue
		}
		q.publish(h)
		if !block {
			q.clock.Unlock()
			return 0, 0, false, nil
		}
		// Ready when a record arrives, or nothing to wait for.
		ready := func() bool { return hw.Load() != 0 || q.shut.Load() != 0 || !q.open.Load() }
		if q.getSpin.Budget() > 0 { // pausing is spinning
			q.pace.wait()
		}
		if ok, start := q.getSpin.Spin(ready); !ok {
			if !followed {
				// Waiters for the consumer lock now follow this
				// process, which keeps it while it sleeps (lock.go).
				q.clock.WakeAllWaiters()
				followed = true
			}
			if err := q.waitData(ctx, ready); err != nil {
				q.clock.Unlock()
				return 0, 0, false, err
			}
			if ready() {
				q.getSpin.Slept(start)
			}
		}
	}
}

// take copies the n-byte message at head h into buf (or a new *out, if out
// is not nil), removes it, and releases the consumer lock. The caller has
// validated the record; buf may be shorter than n only to discard it.
func (q *Queue) take(c *call, h uint64, n int, buf []byte, out *[]byte) int {
	src := unsafe.Slice((*byte)(q.at(h&q.mask+hdrSize)), n)
	if out != nil {
		*out = append([]byte(nil), src...)
	} else {
		copy(buf, src)
	}
	if q.faults.getCopied != nil {
		c.count()
		q.faults.getCopied()
	}
	q.taken(c, h+recLen(n), 1)
	return n
}

// taken removes k messages (k > 0) by storing head h, their end, and
// releases the consumer lock: the end of a Get or a Read.
func (q *Queue) taken(c *call, h uint64, k int) {
	// Take the messages (head), publish freed if due, unlock, then fence
	// (the add) before looking at the futex words. The sleeper bit of
	// spaceFx must be loaded after the fence, never before: a load before
	// it may pass the head store still in this CPU's store buffer, while a
	// producer sets the bit and re-reads the old head, and then nobody
	// wakes it (a lost wake-up).
	release.Store64(q.head, h)
	if h-q.freed.Load() >= q.pubEvery {
		release.Store64(q.freed, h)
	}
	q.pace.took += k
	q.clock.UnlockRelease()
	q.gets.Add(uint64(k))
	q.wakeAfter(c, q.clock, q.spaceFx)
}

// publish stores h in freed now, for producers spinning on it, and wakes
// sleeping producers (the consumer is about to wait). Under the consumer
// lock, in a counted call. A release store is enough: a sleeping producer
// re-checks head itself, which take stored before its fence.
func (q *Queue) publish(h uint64) {
	if q.freed.Load() != h {
		release.Store64(q.freed, h)
	}
	robust.Wake(q.spaceFx)
}

// Len returns the number of messages in the queue (a snapshot), 0 on a
// closed handle.
func (q *Queue) Len() int {
	c, err := q.enter()
	if err != nil {
		return 0
	}
	g := q.gets.Load()
	p := q.puts.Load()
	c.leave()
	if p < g {
		return 0
	}
	return int(p - g)
}

// Stats are a queue's counters, shared by every process using it. The
// zero Stats is a queue that nothing has used (or a closed handle's). It is
// a plain value: copy it freely.
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
// it only reads the counters. A closed handle returns the zero Stats.
func (q *Queue) Stats() Stats {
	c, err := q.enterCounted() // the liveness check makes system calls
	if err != nil {
		return Stats{}
	}
	defer c.leave()
	q.recoverProducer()
	return Stats{
		Puts: q.puts.Load(), Gets: q.gets.Load(), Dropped: q.dropped.Load(),
		ConsumerDeaths: q.cdead.Load(), Waits: q.waits.Load(),
	}
}

// Shutdown ends the queue for every process (Python 3.13's
// Queue.shutdown): Put then returns [ErrShutdown], Get drains what is left
// and then returns [io.EOF], and every waiter in every process is woken.
// It is safe to call twice. It does not release this handle: see
// [Queue.Close]. On a corrupt queue it shuts the queue down all the same
// and returns [ErrCorrupt].
func (q *Queue) Shutdown() error {
	c, err := q.enterCounted()
	if err != nil {
		return err
	}
	defer c.leave()
	// Under the producer lock, so that every Put either committed before
	// Shutdown or sees shut. A corrupt queue is shut down all the same (no
	// Put can commit on it), and Shutdown reports the corruption.
	err = q.lockProducers(context.Background(), true)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return err
	}
	q.shut.Store(1)
	if err == nil {
		q.plock.Unlock()
	}
	robust.WakeAll(q.dataFx)
	robust.WakeAll(q.spaceFx)
	return err
}

// IsShutdown reports whether the queue has been shut down (by any
// process); false on a closed handle.
func (q *Queue) IsShutdown() bool {
	c, err := q.enter()
	if err != nil {
		return false
	}
	shut := q.shut.Load() != 0
	c.leave()
	return shut
}

// Close releases this handle: its mapping and descriptor. The queue goes on
// for every other handle and process (a named queue's file stays: see
// [Remove]; to end the queue for everyone, see [Queue.Shutdown]). Calls
// blocked on this handle, in Put, Get or their kin, return an error
// wrapping [os.ErrClosed] at once, and so does every later call; Close
// returns once no call on the handle is in progress. It is safe to call
// twice, and concurrently with any other call.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() { q.closeErr = q.closeHandle() })
	return q.closeErr
}

// noCopy makes go vet's copylocks check report copies.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
