package ipcmap

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
)

// Writing
//
// Writers take the map's robust lock (internal/robust, an internal lock:
// whoever takes it over from a dead holder repairs at once) and hold it
// for one operation. A write never changes what a reader may be reading
// in place; its steps are, in order:
//
//  1. allocate the new record's chunks (set their bits, add to used);
//  2. write the record (header, key, value) into them;
//  3. publish: one atomic store of the slot's word (the new record, or
//     "deleted"): the commit point;
//  4. add 1 to the slot's seq (readers of the old record retry);
//  5. free the old record's chunks (clear their bits, subtract from used);
//  6. update the counters live and tombs;
//  7. (Delete) turn deleted slots at the end of the probe chain to empty.
//
// So the slot words alone say what the map holds: before step 3 the old
// entry, from it on the new one, never a mix. Everything else (bitmap,
// used, live, tombs) follows from the words, and that is the repair: the
// writer that takes the lock over from a dead one rebuilds the bitmap and
// the counters from the slot words (checking every record, and that no
// two overlap), which also frees a record the dead writer allocated but
// never published. The repair also adds 1 to every slot's seq before it
// frees anything: the dead writer may have published without incrementing
// its slot's seq (step 4), and a reader still inside the old record, which
// the repair frees and the next writes reuse, must see its seq change as
// step 4 would have made it. Repair runs before the
// new writer's own operation, which then returns its result together with
// an error matching [ErrOwnerDead], and [Stats.Deaths] counts it.
//
// Deleting. A deleted slot (a tombstone) keeps probe chains through it
// intact; an insert reuses the first one on its key's chain. After a
// delete, if the next slot is empty, the deleted slots that end the chain
// are made empty again, from the last backwards: no key's chain crosses
// them. And when more than a quarter of the slots are deleted, Delete
// purges: it empties every deleted slot that no live key's chain crosses
// (from each live key's home to its slot). A deleted slot that some chain
// crosses stays, so probes may get longer, never wrong: every probe is
// bounded by the table's size.
//
// Allocation. The data area is cut into 16-byte chunks, and a record takes
// a contiguous run of them, found next-fit in the bitmap (starting where
// the last allocation ended). Freed runs merge with free neighbours by
// themselves, since the bitmap is the only record of what is free. A write
// that finds no run long enough fails with [ErrFull] even when as many
// bytes are free in smaller runs: fragmentation is not compacted (the map
// does not move records, which readers may be reading).

// step names the points of a write where a test can stop the writer; see
// "Writing".
type step int

const (
	stepLocked    step = iota // the lock is held, nothing changed
	stepAllocated             // the new record's chunks are marked
	stepKey                   // the new record's header and key are written
	stepWritten               // the new record is written, not published
	stepPublished             // the slot's word is stored (the commit point)
	stepSeq                   // the slot's seq is incremented
	stepFreed                 // the old record is freed
	stepCounted               // live and tombs are updated
	stepCleaning              // Delete: one chain-end tombstone is made empty
	stepRepairing             // repair: the bitmap is cleared and partly rebuilt
	numSteps
)

var stepNames = [...]string{"locked", "allocated", "key", "written", "published", "seq", "freed", "counted", "cleaning", "repairing"}

func (s step) String() string { return stepNames[s] }

// faults are test hooks, bbolt's db.ops style: nil in production. A test
// helper process sets at to kill itself at a step of a write.
type faults struct {
	at func(op string, s step)
}

func (m *Map) fault(op string, s step) {
	if m.faults.at != nil {
		m.faults.at(op, s)
	}
}

// The operations, as faults and errors name them.
const (
	opSet         = "Set"
	opDelete      = "Delete"
	opCAS         = "CompareAndSwap"
	opLoadOrStore = "LoadOrStore"
	opRepair      = "repair" // the repair after a dead writer, inside any write
)

// lockWriters takes the writers' lock; repaired reports that it was taken
// over from a dead writer and repaired. On error the lock is not held.
func (m *Map) lockWriters(ctx context.Context, op string) (repaired bool, err error) {
	l := m.w.lock
	if l.TryLockFree() {
		return false, nil
	}
	err = l.Lock(ctx)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, ErrOwnerDead):
		if rerr := m.repair(); rerr != nil {
			l.Unlock()
			return false, fmt.Errorf("ipcmap: %s: repairing after a dead writer: %w", op, rerr)
		}
		return true, nil
	case errors.Is(err, os.ErrClosed):
		return false, errClosed
	case errors.Is(err, ErrCorrupt):
		return false, fmt.Errorf("ipcmap: %s: lock: %w", op, err)
	}
	return false, err
}

// unlockWriters releases the lock and returns the error of a write that
// did its work: nil, or (repaired) one matching ErrOwnerDead.
func (m *Map) unlockWriters(op string, repaired bool) error {
	m.w.lock.Unlock()
	if repaired {
		return fmt.Errorf("ipcmap: %s: done, after repairing the map left by a writer that died inside a write: %w", op, ErrOwnerDead)
	}
	return nil
}

// unlockFailed releases the lock and returns the error of a write that
// failed with err; it also matches ErrOwnerDead if the write repaired the
// map first.
func (m *Map) unlockFailed(op string, err error, repaired bool) error {
	m.w.lock.Unlock()
	if repaired {
		return fmt.Errorf("ipcmap: %s: %w (after repairing the map left by a dead writer: %w)", op, err, ErrOwnerDead)
	}
	return fmt.Errorf("ipcmap: %s: %w", op, err)
}

// repair rebuilds the bitmap and the counters from the slot words, after
// a writer died holding the lock; see "Writing". A record that is
// impossible, or overlaps another, is ErrCorrupt; the repair still goes
// through every slot, so that the bitmap it leaves marks every record
// that is intact (an impossible one has no extent to mark, an overlapping
// one is marked as well): the writes after a failed repair never take the
// bytes of an entry that was whole. Killed anywhere, it leaves the lock to
// a dead holder, and the next writer repairs again from the start.
func (m *Map) repair() error {
	w := &m.w
	w.deaths.Add(1)
	for i := range w.bitmap {
		w.bitmap[i].Store(0)
	}
	var live, tombs uint64
	var bad error // the first impossible thing found
	for i := range w.slots {
		w.slots[i].seq.Add(1) // retires reads of a record the repair frees; see "Writing"
		word := w.slots[i].word.Load()
		switch word {
		case wordEmpty:
			continue
		case wordDeleted:
			tombs++
			continue
		}
		r, err := w.recordAt(chunkOf(word))
		if err != nil {
			bad = cmp.Or(bad, fmt.Errorf("slot %d: %w", i, err))
			continue
		}
		if !w.runFree(r.c, r.n) {
			bad = cmp.Or(bad, fmt.Errorf("ipcmap: slot %d: record at chunk %d overlaps another: %w", i, r.c, ErrCorrupt))
		}
		w.markRun(r.c, r.n, true)
		live++
		if live == 1 {
			m.fault(opRepair, stepRepairing)
		}
	}
	if live > w.g.entries {
		bad = cmp.Or(bad, fmt.Errorf("ipcmap: %d live entries in a map of %d: %w", live, w.g.entries, ErrCorrupt))
	}
	var used uint64
	for i := range w.bitmap {
		used += uint64(bits.OnesCount64(w.bitmap[i].Load()))
	}
	w.live.Store(live)
	w.tombs.Store(tombs)
	w.used.Store(used)
	return bad
}

// checkCounters refuses a write on a map whose counters are impossible
// for its shape (corrupt: a write would trust them), before it changes
// anything.
func (w *words) checkCounters() error {
	live, used, tombs := w.live.Load(), w.used.Load(), w.tombs.Load()
	if live > w.g.entries || used > w.g.chunks || tombs > w.g.slots() {
		return fmt.Errorf("impossible counters (%d entries of %d, %d chunks used of %d, %d deleted slots of %d): %w",
			live, w.g.entries, used, w.g.chunks, tombs, w.g.slots(), ErrCorrupt)
	}
	return nil
}

// found is where a writer's probe for a key ended.
type found struct {
	ok   bool   // the key is in slot i, its record r
	i    uint64 // the key's slot, if ok
	r    record
	ins  uint64 // else the slot to insert into: the chain's first deleted slot, or the empty slot that ends it
	room bool   // ins is set
}

// find probes for key under the lock.
func (w *words) find(key []byte, h uint64) (found, error) {
	tag := uint32(h >> 32)
	mask := w.g.slots() - 1
	var f found
	for i, n := h&mask, uint64(0); n <= mask; i, n = (i+1)&mask, n+1 {
		word := w.slots[i].word.Load()
		switch {
		case word == wordEmpty:
			if !f.room {
				f.ins, f.room = i, true
			}
			return f, nil
		case word == wordDeleted:
			if !f.room {
				f.ins, f.room = i, true
			}
			continue
		case tagOf(word) != tag:
			continue
		}
		r, err := w.recordAt(chunkOf(word))
		if err != nil {
			return f, fmt.Errorf("slot %d: %w", i, err)
		}
		if r.klen == uint64(len(key)) && w.equal(r.key, key) {
			f.ok, f.i, f.r = true, i, r
			return f, nil
		}
	}
	return f, nil
}

// checkSizes refuses a key and value that no map of this shape can hold.
func (w *words) checkSizes(key, val []byte) error {
	if uint64(len(key)) > 1<<32-1 || uint64(len(val)) > 1<<32-1 ||
		recordChunks(uint64(len(key)), uint64(len(val))) > w.g.chunks {
		return fmt.Errorf("ipcmap: a %d-byte key with a %d-byte value does not fit in %d bytes: %w",
			len(key), len(val), w.g.chunks*chunkSize, ErrTooLarge)
	}
	return nil
}

// Set sets key's value to val. It fails with [ErrFull], changing nothing,
// if key is new and the map holds its most entries, or if there is no run
// of free bytes for the entry (see the package doc, "Capacity"). It waits
// for the lock only while another writer holds it, and returns ctx's error
// if ctx ends first. An error matching [ErrOwnerDead] means that Set did
// its work after repairing what a dead writer left.
func (m *Map) Set(ctx context.Context, key, val []byte) error {
	_, _, err := m.put(ctx, opSet, key, val, nil)
	return err
}

// LoadOrStore returns key's value and true if key is in the map; else it
// stores val and returns val and false. Its errors are [Map.Set]'s; after
// an error other than [ErrOwnerDead], neither result means anything.
func (m *Map) LoadOrStore(ctx context.Context, key, val []byte) (actual []byte, loaded bool, err error) {
	actual, loaded, err = m.put(ctx, opLoadOrStore, key, val, nil)
	if err == nil || errors.Is(err, ErrOwnerDead) {
		if !loaded {
			actual = bytes.Clone(val)
		}
		if actual == nil {
			actual = []byte{}
		}
	}
	return actual, loaded, err
}

// CompareAndSwap sets key's value to new if key is in the map with a value
// of exactly the bytes old, and reports whether it did. Its errors are
// [Map.Set]'s.
func (m *Map) CompareAndSwap(ctx context.Context, key, old, new []byte) (swapped bool, err error) {
	_, swapped, err = m.put(ctx, opCAS, key, new, old)
	return swapped, err
}

// put is Set, LoadOrStore and CompareAndSwap (op). For LoadOrStore it
// returns the present value and true if there is one (loaded); for
// CompareAndSwap, whether it swapped.
func (m *Map) put(ctx context.Context, op string, key, val, old []byte) (cur []byte, flag bool, err error) {
	if err := m.enter(); err != nil {
		return nil, false, err
	}
	defer m.leave()
	w := &m.w
	if err := w.checkSizes(key, val); err != nil {
		return nil, false, err
	}
	repaired, err := m.lockWriters(ctx, op)
	if err != nil {
		return nil, false, err
	}
	cur, flag, err = m.putLocked(op, key, val, old)
	if err != nil {
		return nil, false, m.unlockFailed(op, err, repaired)
	}
	return cur, flag, m.unlockWriters(op, repaired)
}

// putLocked is put's work under the lock; see "Writing" for its steps.
func (m *Map) putLocked(op string, key, val, old []byte) (cur []byte, flag bool, err error) {
	w := &m.w
	m.fault(op, stepLocked)
	if err := w.checkCounters(); err != nil {
		return nil, false, err
	}
	h := hash(key)
	f, err := w.find(key, h)
	if err != nil {
		return nil, false, err
	}
	switch {
	case op == opLoadOrStore && f.ok:
		return w.load(nil, f.r.val, f.r.vlen), true, nil // loaded
	case op == opCAS && (!f.ok || f.r.vlen != uint64(len(old)) || !w.equal(f.r.val, old)):
		return nil, false, nil
	case !f.ok && w.live.Load() >= w.g.entries:
		return nil, false, fmt.Errorf("%d entries, the most this map holds: %w", w.g.entries, ErrFull)
	case !f.ok && !f.room:
		return nil, false, fmt.Errorf("no free slot on a probe chain with %d live entries: %w", w.live.Load(), ErrCorrupt)
	}
	klen, vlen := uint64(len(key)), uint64(len(val))
	n := recordChunks(klen, vlen)
	c, ok := w.alloc(n)
	if !ok {
		return nil, false, fmt.Errorf("no run of %d free bytes for a %d-byte key and a %d-byte value (%d of %d bytes in use): %w",
			n*chunkSize, klen, vlen, w.used.Load()*chunkSize, w.g.chunks*chunkSize, ErrFull)
	}
	m.fault(op, stepAllocated)
	r := c * chunkSize / 8
	w.data[r].Store(vlen<<32 | klen)
	w.store(r+1, key)
	m.fault(op, stepKey)
	w.store(r+1+pad8(klen)/8, val)
	m.fault(op, stepWritten)
	i := f.ins
	if f.ok {
		i = f.i
	}
	s := &w.slots[i]
	wasDeleted := s.word.Load() == wordDeleted
	s.word.Store(liveWord(c, uint32(h>>32))) // the commit point
	m.fault(op, stepPublished)
	s.seq.Add(1) // pairs with a reader's second load of seq
	m.fault(op, stepSeq)
	if f.ok {
		w.free(f.r.c, f.r.n)
	}
	m.fault(op, stepFreed)
	if !f.ok {
		w.live.Add(1)
		if wasDeleted {
			w.tombs.Add(^uint64(0))
		}
	}
	m.fault(op, stepCounted)
	return nil, op == opCAS, nil // swapped; for LoadOrStore, not loaded
}

// Delete removes key, and reports whether it was there. Its errors are
// [Map.Set]'s, [ErrFull] apart.
func (m *Map) Delete(ctx context.Context, key []byte) (deleted bool, err error) {
	if err := m.enter(); err != nil {
		return false, err
	}
	defer m.leave()
	repaired, err := m.lockWriters(ctx, opDelete)
	if err != nil {
		return false, err
	}
	deleted, err = m.deleteLocked(key)
	if err != nil {
		return false, m.unlockFailed(opDelete, err, repaired)
	}
	return deleted, m.unlockWriters(opDelete, repaired)
}

// deleteLocked is Delete's work under the lock.
func (m *Map) deleteLocked(key []byte) (bool, error) {
	w := &m.w
	m.fault(opDelete, stepLocked)
	if err := w.checkCounters(); err != nil {
		return false, err
	}
	f, err := w.find(key, hash(key))
	if err != nil || !f.ok {
		return false, err
	}
	s := &w.slots[f.i]
	s.word.Store(wordDeleted) // the commit point
	m.fault(opDelete, stepPublished)
	s.seq.Add(1)
	m.fault(opDelete, stepSeq)
	w.free(f.r.c, f.r.n)
	m.fault(opDelete, stepFreed)
	w.live.Add(^uint64(0))
	w.tombs.Add(1)
	m.fault(opDelete, stepCounted)
	mask := w.g.slots() - 1
	if w.slots[(f.i+1)&mask].word.Load() == wordEmpty {
		for i, n := f.i, uint64(0); n <= mask && w.slots[i].word.Load() == wordDeleted; i, n = (i-1)&mask, n+1 {
			w.slots[i].word.Store(wordEmpty)
			w.tombs.Add(^uint64(0))
			m.fault(opDelete, stepCleaning)
		}
	}
	if w.tombs.Load() > w.g.slots()/4 {
		return true, m.purge()
	}
	return true, nil
}

// purge makes empty every deleted slot that no live key's probe chain
// crosses (see "Deleting"); the caller holds the lock. Each slot it
// empties is safe to empty on its own, so a writer that dies in the
// middle leaves a map as good as before, with more deleted slots.
func (m *Map) purge() error {
	w := &m.w
	mask := w.g.slots() - 1
	needed := make([]uint64, (w.g.slots()+63)/64)
	var key []byte
	for p := range w.g.slots() {
		word := w.slots[p].word.Load()
		if word == wordEmpty || word == wordDeleted {
			continue
		}
		r, err := w.recordAt(chunkOf(word))
		if err != nil {
			return fmt.Errorf("slot %d: %w", p, err)
		}
		key = w.load(key[:0], r.key, r.klen)
		for i, n := hash(key)&mask, uint64(0); i != p && n <= mask; i, n = (i+1)&mask, n+1 {
			needed[i/64] |= 1 << (i % 64)
		}
	}
	for i := range w.g.slots() {
		if needed[i/64]&(1<<(i%64)) == 0 && w.slots[i].word.Load() == wordDeleted {
			w.slots[i].word.Store(wordEmpty)
			w.tombs.Add(^uint64(0))
			m.fault(opDelete, stepCleaning)
		}
	}
	return nil
}
