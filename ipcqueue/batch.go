package ipcqueue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ipckit/ipckit/internal/release"
	"github.com/ipckit/ipckit/internal/robust"
)

// Batches, claims and zero-copy reads
//
// A batch is published by one store. writeBatch takes the producer lock
// once, stores claimN (the batch's message count) and claim (its end) for
// a repairer, zeroes the terminator after the batch, then writes every
// record, each payload then its header, except the header word at tail:
// the first record's, or the padding's if the batch's first record would
// cross the ring's end. That word is stored last, and it is the batch's
// one commit. Consumers learn of records only from the header word at
// head, and the word at tail is 0 (the terminator of the record before)
// until that commit, so they see nothing of the batch before it and all of
// it after: every other header was stored before the commit (release
// stores, in program order; the consumer's atomic load of the word at
// tail pairs with the commit, and each later header load is ordered after
// it). A single Put is the one-record case of the same rule (its padding,
// if any, is committed after its record).
//
// A producer killed anywhere inside PutBatch is repaired as one inside Put
// is (repairProducer): the header word at tail tells whether the commit
// happened. If it did, the whole batch is in the queue, and tail moves to
// claim; if not, none of it is, and the claimN messages count as dropped.
// So a consumer sees a batch whole or not at all, even if its producer is
// SIGKILLed halfway through (TestPutBatchKilledAtEveryStep).
//
// The batch's room is checked as a whole: PutBatch waits (holding no lock)
// until the whole batch fits, and never splits it. A batch that could not
// fit in the empty queue wherever its indices stand (its records' bytes,
// plus the largest record less 8 for the padding it may need, over
// Capacity) is ErrTooLarge at once, with nothing written.
//
// A Claim (Reserve) is a Put cut in two: Reserve takes the producer lock,
// finds room for one record and stores claim and the terminator as Put
// does, and returns the record's payload space in the ring; Commit stores
// the header (the commit) and tail, and unlocks; Abort restores claim and
// unlocks, having committed nothing. A claim therefore holds the producer
// side: every other producer, in every process, waits for it. A process
// killed holding a claim is one killed inside Put before its commit: the
// next process to take the lock repairs it and counts the message in
// Stats.Dropped.
//
// A claim that is never committed or aborted by a live holder. Nothing
// takes a claim from a live process, by design: its Bytes are ring memory
// that the holder may still be writing, and any timeout that gave the
// space to someone else would let a slow holder write over other
// producers' messages, which is worse than a wait. So a claim is a lock,
// and the rule is that of a lock: its holder must end it (defer
// claim.Abort() after Reserve; Abort after Commit does nothing). What
// keeps the others from being wedged for ever: a claim ends with its
// holder's process (repaired as above); every blocking call that waits
// for it (Put, PutBatch, Reserve) is bounded by its own ctx; TryPut and
// TryPutBatch return false at once while a claim is held (offReserved),
// instead of waiting as they do for a Put; and consumers are not held up
// at all. Shutdown and Close of the claim's own handle wait for it.
//
// Read takes up to max messages under one acquisition of the consumer
// lock and passes each to fn in place, in the ring; then one head store
// takes all the messages fn accepted, and one gets add and one wake-up
// follow. fn runs with the consumer lock held (offReading tells TryGet so).
// If fn returns an error, head stops before that message, which stays in
// the queue with every later one. A consumer killed inside fn has stored
// no head: every message of its Read stays in the queue for the next
// consumer, which takes the lock over (at-least-once for that call; a
// Read's fn can see a message that a later Read sees again, but only if
// the first Read's process died before Read returned).
//
// Try calls. TryGet (and TryGetInto) report "empty", and TryPut and
// TryPutBatch "full", only if the queue was empty, or had no room for
// their message or batch, at some instant during the call (emptyNow and
// fullNow read head and tail consistently, without the lock), with two
// stated exceptions: TryGet also reports empty while another consumer is
// inside Read's fn, and TryPut and TryPutBatch report full while a claim
// is held, since those hold their lock for as long as user code runs.
// While a Get or Put holds the lock and the queue is not empty (not full),
// a Try call tries again rather than giving up: a Get asleep on the empty
// queue holds the consumer lock, and a TryGet that sees a message arrive
// wakes it, so that it takes the message or lets go of the lock. The
// common paths are unchanged: only a Try call that finds the lock busy
// pays. One bound keeps a Try call from waiting for ever: a holder that
// makes no progress (head or tail unmoved, the same holder) for
// tryPatience, a stopped process or a lock word naming a holder whose
// liveness cannot be checked, makes it give up and report empty or full
// as before: the third exception.

// batch is the messages of a PutBatch: msgs, or (msgs == nil) n messages
// of stride bytes each, laid end to end in flat (a Typed batch).
type batch struct {
	msgs   [][]byte
	flat   []byte
	stride int
	n      int
	bytes  uint64 // payload bytes
	cost   uint64 // the records' bytes
	maxRec uint64 // the largest record
	over   int    // the index of a message over the maximum size, or -1
}

// msg returns message i of b.
func (b *batch) msg(i int) []byte {
	if b.msgs != nil {
		return b.msgs[i]
	}
	return b.flat[i*b.stride : (i+1)*b.stride]
}

// measure fills b's totals, for a queue whose maximum message is maxMsg.
func (b *batch) measure(maxMsg uint64) {
	b.over = -1
	if b.msgs == nil {
		L := recLen(b.stride)
		b.bytes, b.cost, b.maxRec = uint64(b.n*b.stride), uint64(b.n)*L, L
		if b.n > 0 && uint64(b.stride) > maxMsg {
			b.over = 0
		}
		return
	}
	b.n = len(b.msgs)
	for i, m := range b.msgs {
		L := recLen(len(m))
		b.bytes += uint64(len(m))
		b.cost += L
		b.maxRec = max(b.maxRec, L)
		if uint64(len(m)) > maxMsg && b.over < 0 {
			b.over = i
		}
	}
}

// check returns ErrTooLarge if b can never be written whole.
func (q *Queue) check(b *batch) error {
	if b.over >= 0 {
		return fmt.Errorf("%w: message %d of the batch has %d bytes, at most %d", ErrTooLarge, b.over, len(b.msg(b.over)), q.maxMsg)
	}
	if need := b.cost + b.maxRec - hdrSize; need > q.size-hdrSize {
		return fmt.Errorf("%w: a batch of %d messages takes %d bytes with the padding it may need, the queue's capacity is %d", ErrTooLarge, b.n, need, q.size-hdrSize)
	}
	return nil
}

// batchEnd returns where the records of b end if written from tail t:
// with at most one padding (b takes less than a lap).
func (q *Queue) batchEnd(t uint64, b *batch) uint64 {
	if t&q.mask+b.cost <= q.size {
		return t + b.cost
	}
	p := t
	for i := range b.n {
		L := recLen(len(b.msg(i)))
		if off := p & q.mask; off+L > q.size {
			p += q.size - off
		}
		p += L
	}
	return p
}

// PutBatch appends the messages of msgs as one: consumers see all of them,
// in order and with no other message among them, or none. It waits while
// the queue lacks room for the whole batch, and never splits it. A message
// over [Queue.MaxMsg], or a batch that would not fit in the empty queue
// (its messages' costs, as the package doc counts them, plus the largest
// cost less 8, over [Queue.Capacity]), is [ErrTooLarge], with nothing
// written. It returns len(msgs) once the batch is in the queue, and 0 with
// Put's errors otherwise: then nothing of it was written. The batch takes
// the producer lock once and makes one commit store, one full fence and at
// most one wake-up, and it allocates nothing. PutBatch does not retain
// msgs.
func (q *Queue) PutBatch(ctx context.Context, msgs [][]byte) (int, error) {
	b := batch{msgs: msgs}
	if ok, err := q.putBatch(ctx, &b, true); !ok {
		return 0, err
	}
	return len(msgs), nil
}

// TryPutBatch is PutBatch if the whole batch fits now: false, nil means
// the queue had no room for it at some instant during the call, or a claim
// ([Queue.Reserve]) held the producer side (see [Queue.TryPut]).
func (q *Queue) TryPutBatch(msgs [][]byte) (bool, error) {
	b := batch{msgs: msgs}
	return q.putBatch(context.Background(), &b, false)
}

// putBatch writes b (blocking, or trying).
func (q *Queue) putBatch(ctx context.Context, b *batch, block bool) (bool, error) {
	b.measure(q.maxMsg)
	c, err := q.enter()
	if err != nil {
		return false, err
	}
	ok, err := q.putBatchWith(ctx, &c, b, block)
	c.leave()
	return ok, err
}

// putBatchWith is putBatch within call c. Like putFast, its fast path
// writes a batch of at most pinnedCopy bytes that fits by the cached head
// with c pinned; anything else makes c counted.
func (q *Queue) putBatchWith(ctx context.Context, c *call, b *batch, block bool) (bool, error) {
	if err := q.check(b); err != nil || b.n == 0 {
		return err == nil, err
	}
	if b.bytes <= pinnedCopy && q.plock.TryLockFree() {
		t := q.tail.Load()
		if t&7 == 0 && q.batchEnd(t, b)+hdrSize-q.cachedHead <= q.size && q.shut.Load() == 0 {
			q.writeBatch(c, t, b)
			return true, nil
		}
		c.count() // unlock may wake a sleeper: a system call
		q.plock.Unlock()
	}
	c.count()
	t, ok, err := q.acquire(ctx, block, span{batch: b})
	if !ok {
		return false, err
	}
	q.writeBatch(c, t, b)
	return true, nil
}

// The steps of writeBatch, at which a test's faults.batchStep runs.
const (
	stepClaimed   = iota // claim, claimN and the terminator stored
	stepRecord           // after each record but the commit is written
	stepWritten          // every record written but the commit
	stepCommitted        // the commit stored: the batch is published
	stepTail             // tail stored, lock held
	stepUnlocked         // lock released, puts not yet added to
	stepCounted          // puts added to, wake-up not yet made
	numSteps
)

// step runs the batchStep fault hook, if any, at step s (counting c
// first: a hook may sleep).
func (q *Queue) step(c *call, s int) {
	if q.faults.batchStep != nil {
		c.count()
		q.faults.batchStep(s)
	}
}

// writeBatch writes the records of b at tail t, under the producer lock,
// which it releases; the caller has checked that they and the terminator
// fit. See "Batches, claims and zero-copy reads".
func (q *Queue) writeBatch(c *call, t uint64, b *batch) {
	end := q.batchEnd(t, b)
	q.claimRoom(end, b.n)
	q.step(c, stepClaimed)
	var commit uint64 // the header word at t, stored last
	p := t
	for i := range b.n {
		m := b.msg(i)
		if off := p & q.mask; off+recLen(len(m)) > q.size {
			pad := q.size - off
			if h := mkHeader(p, int(pad-hdrSize), true); p == t {
				commit = h
			} else {
				release.Store64(q.hdr(p), h)
			}
			p += pad
		}
		copy(unsafe.Slice((*byte)(q.at(p&q.mask+hdrSize)), len(m)), m)
		if h := mkHeader(p, len(m), false); p == t {
			commit = h
		} else {
			release.Store64(q.hdr(p), h)
		}
		p += recLen(len(m))
		q.step(c, stepRecord)
	}
	q.step(c, stepWritten)
	release.Store64(q.hdr(t), commit)
	q.published(c, end, b.n)
}

// claimRoom stores, before a producer writes anything, what a repairer
// needs should it die: the count k of messages it writes (claimN) and their
// end (claim); then it zeroes the terminator at end, the header word
// consumers will load once they have taken the records (release stores:
// the commit publishes them).
func (q *Queue) claimRoom(end uint64, k int) {
	release.Store64(q.claimN, uint64(k))
	release.Store64(q.claim, end)
	release.Store64(q.hdr(end), 0)
}

// published ends a write whose k records are committed: it publishes tail
// (end), unlocks, and then the atomic add of puts is the write's one full
// fence, which orders those stores before the loads of the futex words
// (no lost wake-up, see wait.go).
func (q *Queue) published(c *call, end uint64, k int) {
	q.step(c, stepCommitted)
	release.Store64(q.tail, end)
	q.step(c, stepTail)
	q.plock.UnlockRelease()
	q.step(c, stepUnlocked)
	q.puts.Add(uint64(k))
	q.step(c, stepCounted)
	q.wakeAfter(c, q.plock, q.dataFx)
}

// Claim is room for one message reserved in the ring by [Queue.Reserve]:
// write the message into [Claim.Bytes], then [Claim.Commit] it, or
// [Claim.Abort]. While it is open the claim holds the queue's producer
// side: every other producer, in every process, waits for it (TryPut
// reports full), and so do [Queue.Shutdown] and the Close of its handle.
// So end every claim promptly, typically with defer claim.Abort() after
// Reserve (Abort after Commit does nothing). Nothing takes a claim from a
// live holder (its Bytes would then overwrite other messages); a process
// that dies holding one loses only its message, which is counted in
// [Stats.Dropped] (see the package doc, "Crash safety").
//
// A Claim is a plain value; copies name the same claim, and only the
// first Commit or Abort of any of them acts. The zero Claim is ended. A
// Claim is used by one goroutine at a time.
type Claim struct {
	q    *Queue
	seq  uint64 // the handle's claimSeq while this claim is open
	t, p uint64 // tail, and the record's position (after any padding)
	n    int
}

// Reserve reserves room for a message of n bytes (0 to [Queue.MaxMsg]) and
// returns it as an open [Claim], taking the producer side until the claim
// is committed or aborted. It waits while the queue is full; its errors
// are Put's, and nothing is reserved when it returns one. It allocates
// nothing. A goroutine holding a claim must not Put, PutBatch or Reserve
// on the same queue before ending it (it would wait for itself).
func (q *Queue) Reserve(ctx context.Context, n int) (Claim, error) {
	c, err := q.enterCounted() // the open claim keeps the call
	if err != nil {
		return Claim{}, err
	}
	if n < 0 || uint64(n) > q.maxMsg {
		c.leave()
		return Claim{}, fmt.Errorf("%w: reserve %d bytes, at most %d", ErrTooLarge, n, q.maxMsg)
	}
	L := recLen(n)
	t, ok, err := q.acquire(ctx, true, span{single: L})
	if !ok {
		c.leave()
		return Claim{}, err
	}
	pad, end := q.place(t, L)
	q.claimRoom(end, 1)
	release.Store64(q.reserved, 1)
	return Claim{q: q, seq: q.claimSeq.Add(1), t: t, p: t + pad, n: n}, nil
}

// Bytes returns the claim's n bytes of ring memory, for the message. They
// hold garbage until written, and are valid only until Commit or Abort;
// nil once the claim is ended.
func (cl *Claim) Bytes() []byte {
	if !cl.open() {
		return nil
	}
	return unsafe.Slice((*byte)(cl.q.at(cl.p&cl.q.mask+hdrSize)), cl.n)
}

// open reports whether cl is the handle's open claim.
func (cl *Claim) open() bool { return cl.q != nil && cl.q.claimSeq.Load() == cl.seq }

// end ends cl, once: it reports false if cl was not open.
func (cl *Claim) end() bool {
	return cl.q != nil && cl.q.claimSeq.CompareAndSwap(cl.seq, cl.seq+1)
}

// Commit publishes the claim's message (all n bytes of Bytes) and ends
// the claim. On an ended claim it returns [ErrClaimEnded] and does nothing.
func (cl *Claim) Commit() error {
	if !cl.end() {
		return ErrClaimEnded
	}
	q := cl.q
	c := call{q: q} // the claim's counted call
	release.Store64(q.reserved, 0)
	q.commit(cl.t, cl.p, cl.n)
	q.published(&c, cl.p+recLen(cl.n), 1)
	c.leave()
	return nil
}

// commit stores the header of the n-byte message at p and then, if p is
// after tail t, the padding before it (at t, the store that publishes).
func (q *Queue) commit(t, p uint64, n int) {
	release.Store64(q.hdr(p), mkHeader(p, n, false))
	if p != t {
		release.Store64(q.hdr(t), mkHeader(t, int(p-t-hdrSize), true))
	}
}

// Abort ends the claim without publishing anything: no consumer sees any
// of it, and no counter changes. On an ended claim it does nothing.
func (cl *Claim) Abort() {
	if !cl.end() {
		return
	}
	q := cl.q
	release.Store64(q.reserved, 0)
	release.Store64(q.claim, cl.t) // not beyond tail: nothing to repair
	q.plock.Unlock()
	c := call{q: q}
	c.leave()
}

// Read passes up to max messages to fn, oldest first, in place: msg is the
// ring's memory, valid only until fn returns (copy what you keep), and fn
// must not write to it. Read waits while the queue is empty, then takes
// what is there without waiting for more: at least one message and at
// most max. It returns how many messages it took. If fn returns an error,
// Read stops: that message and every later one stay in the queue, and Read
// returns the count of those before it with fn's error. Its other errors
// are Get's (io.EOF once the queue is shut down and drained); max < 1 is
// an error wrapping [os.ErrInvalid].
//
// The messages are taken under one acquisition of the consumer lock with
// one store of the head index, so fn runs holding the consumer lock: other
// consumers wait for it ([Queue.TryGet] reports empty meanwhile), and fn
// must not call Get, Read or their kin on the same queue. A process killed
// inside fn leaves every message of that Read in the queue for the next
// consumer: delivery is at least once for that call (exactly once
// otherwise). Read allocates nothing.
func (q *Queue) Read(ctx context.Context, max int, fn func(msg []byte) error) (int, error) {
	return q.read(ctx, max, fn, true)
}

// TryRead is Read that does not wait: 0, nil means the queue was empty at
// some instant during the call (or another consumer was inside Read's fn;
// see [Queue.TryGet]).
func (q *Queue) TryRead(max int, fn func(msg []byte) error) (int, error) {
	return q.read(context.Background(), max, fn, false)
}

func (q *Queue) read(ctx context.Context, max int, fn func(msg []byte) error, block bool) (int, error) {
	if max < 1 {
		return 0, fmt.Errorf("ipcqueue: read of %d messages, want at least 1: %w", max, os.ErrInvalid)
	}
	c, err := q.enterCounted() // fn may block
	if err != nil {
		return 0, err
	}
	defer c.leave()
	if !q.clock.TryLockFree() {
		if ok, err := q.lockConsumersFor(ctx, block); !ok {
			return 0, err
		}
	}
	h, n, ok, err := q.next(ctx, block)
	if !ok {
		return 0, err
	}
	return q.readLocked(&c, h, n, max, fn)
}

// errTakeStop, returned by a Read's fn (inside this package), takes the
// message and ends the Read with no error; errStopBefore ends it leaving
// the message, as any error does, but is the package's own.
var (
	errTakeStop   = errors.New("ipcqueue: take and stop")
	errStopBefore = errors.New("ipcqueue: stop before")
)

// readLocked passes the messages from head h, the first of n bytes, to fn,
// holding the consumer lock, which it releases with one head store (also
// if fn panics: the message fn panicked on stays).
func (q *Queue) readLocked(c *call, h uint64, n, max int, fn func(msg []byte) error) (k int, err error) {
	p := h // the end of what fn accepted
	release.Store64(q.reading, 1)
	defer func() {
		release.Store64(q.reading, 0)
		if k == 0 {
			q.clock.Unlock()
			return
		}
		q.taken(c, p, k)
	}()
	for {
		err = fn(unsafe.Slice((*byte)(q.at(p&q.mask+hdrSize)), n))
		if err != nil && err != errTakeStop {
			return k, err
		}
		k++
		p += recLen(n)
		if err != nil || k == max {
			return k, nil
		}
		if n = q.nextAfter(p); n < 0 {
			return k, nil
		}
		p = q.skipPadding(p)
	}
}

// nextAfter returns the length of the message at or after position p (past
// a padding), or -1 if there is none yet (or the record is corrupt: the
// next Get or Read reports it).
func (q *Queue) nextAfter(p uint64) int {
	for range 2 {
		kind, n, err := decodeHeader(q.hdr(p).Load(), p, q.size, q.maxMsg)
		switch {
		case err != nil || kind == recEmpty:
			return -1
		case kind == recMessage:
			return n
		}
		p += hdrSize + uint64(n)
	}
	return -1
}

// skipPadding returns p, or the end of the padding at p (nextAfter found
// a message after it).
func (q *Queue) skipPadding(p uint64) uint64 {
	if w := q.hdr(p).Load(); w&flagPadding != 0 {
		return p + hdrSize + w&lenMask
	}
	return p
}

// GetBatch takes up to len(bufs) messages, as [Queue.Read] does, copying
// message i into bufs[i][:cap(bufs[i])] and setting bufs[i] to its length.
// It returns how many it took (at least one, unless it returns an error).
// It stops before a message longer than its buffer's capacity, which stays
// in the queue; if that is the first, it returns 0 and io.ErrShortBuffer.
// Its errors are Read's. It allocates nothing.
func (q *Queue) GetBatch(ctx context.Context, bufs [][]byte) (int, error) {
	if len(bufs) == 0 {
		return 0, fmt.Errorf("ipcqueue: GetBatch into no buffers: %w", os.ErrInvalid)
	}
	i := 0
	n, err := q.Read(ctx, len(bufs), func(m []byte) error {
		b := bufs[i][:cap(bufs[i])]
		if len(m) > len(b) {
			return io.ErrShortBuffer
		}
		bufs[i] = b[:copy(b, m)]
		i++
		return nil
	})
	if n > 0 && err == io.ErrShortBuffer {
		err = nil
	}
	return n, err
}

// tryPatience is how long a Try call waits for a lock holder that makes
// no progress (see "Try calls").
const tryPatience = 100 * time.Millisecond

// patience tracks a Try call's wait for a lock holder.
type patience struct {
	since time.Time
	mark  uint64
}

// keep reports whether to go on waiting for the holder of l, whose side's
// index is idx: yes while the holder or the index changes, and for
// tryPatience after they last did.
func (p *patience) keep(l *robust.Lock, idx *atomic.Uint64, d time.Duration) bool {
	h, _ := l.Holder()
	mark := idx.Load()*31 + uint64(h)
	now := time.Now()
	if p.since.IsZero() || mark != p.mark {
		p.since, p.mark = now, mark
		return true
	}
	return now.Sub(p.since) < d
}

// keep is p.keep with this handle's patience and test hooks: tryRetry when
// the Try call goes on waiting, tryGaveUp when it gives up.
func (q *Queue) keep(p *patience, l *robust.Lock, idx *atomic.Uint64) bool {
	d := tryPatience
	if q.faults.tryPatience != 0 {
		d = q.faults.tryPatience
	}
	if !p.keep(l, idx, d) {
		if q.faults.tryGaveUp != nil {
			q.faults.tryGaveUp()
		}
		return false
	}
	if q.faults.tryRetry != nil {
		q.faults.tryRetry()
	}
	return true
}
