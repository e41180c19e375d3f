package ipcmap

import (
	"fmt"
	"iter"
)

// Reading
//
// A reader takes no lock and writes nothing to shared memory: it cannot
// hold up a writer, and its death changes nothing. It probes the table
// from the key's home slot; at each slot it loads seq, then word, then
// (a live word whose tag matches) the record's key and value, then seq
// again. A writer never changes a record in place: a new value is a new
// record, published by one store of the slot's word, after which the
// writer adds 1 to seq and only then frees the old record. So a reader
// whose two loads of seq agree read a record that was not freed meanwhile,
// whole: the old value or the new one (a torn read, of chunks freed and
// reused under it, always comes with a changed seq, and the reader reads
// the slot again). No state of a slot makes a reader wait, so a writer
// that dies anywhere never blocks one.
//
// A probe ends at an empty slot. Slots go from live to deleted and back,
// and become empty only at the end of a probe chain (see "Deleting"), so
// a key that is in the map at a moment lies, at that moment, on a chain
// of non-empty slots from its home: a reader that meets an empty slot
// can be ordered at a moment the key was absent. Every probe is bounded
// by the table's size, whatever shared memory holds.

// Get returns a copy of key's value, and whether key is in the map.
func (m *Map) Get(key []byte) ([]byte, bool, error) {
	v, ok, err := m.AppendValue(nil, key)
	if ok && v == nil {
		v = []byte{}
	}
	return v, ok, err
}

// AppendValue appends key's value to dst and returns the extended buffer,
// and whether key is in the map (if not, dst is returned as it is): Get
// without an allocation, for a caller that reuses its buffer.
func (m *Map) AppendValue(dst, key []byte) ([]byte, bool, error) {
	if err := m.enter(); err != nil {
		return dst, false, err
	}
	defer m.leave()
	return m.w.lookup(dst, key)
}

// lookup is a reader's probe for key; see "Reading".
func (w *words) lookup(dst, key []byte) ([]byte, bool, error) {
	h := hash(key)
	tag := uint32(h >> 32)
	mask := w.g.slots() - 1
	for i, n := h&mask, uint64(0); n <= mask; i, n = (i+1)&mask, n+1 {
		s := &w.slots[i]
		for {
			seq := s.seq.Load()
			word := s.word.Load()
			if word == wordEmpty {
				return dst, false, nil
			}
			if word == wordDeleted || tagOf(word) != tag {
				break
			}
			if w.readFault != nil {
				w.readFault()
			}
			r, err := w.recordAt(chunkOf(word))
			if err == nil && r.klen == uint64(len(key)) && w.equal(r.key, key) {
				out := w.load(dst, r.val, r.vlen)
				if s.seq.Load() == seq {
					return out, true, nil
				}
				continue // the record may have been freed under us: read the slot again
			}
			if s.seq.Load() == seq {
				if err != nil {
					return dst, false, err
				}
				break // another key with the same tag
			}
		}
	}
	return dst, false, nil
}

// readSlot reads slot i as a reader: its key and value if it is live.
func (w *words) readSlot(i uint64) (key, val []byte, live bool, err error) {
	s := &w.slots[i]
	for {
		seq := s.seq.Load()
		word := s.word.Load()
		if word == wordEmpty || word == wordDeleted {
			return nil, nil, false, nil
		}
		r, err := w.recordAt(chunkOf(word))
		if err == nil {
			key = w.load(make([]byte, 0, r.klen), r.key, r.klen)
			val = w.load(make([]byte, 0, r.vlen), r.val, r.vlen)
		}
		if s.seq.Load() == seq {
			if err != nil {
				return nil, nil, false, fmt.Errorf("ipcmap: slot %d: %w", i, err)
			}
			return key, val, true, nil
		}
	}
}

// Range returns an iterator over the map's entries: each key with a copy
// of its value, both the caller's. It takes no lock and no snapshot, as
// sync.Map's Range: each entry present for the whole iteration is seen
// once, with a value it held during the iteration; one written meanwhile
// may be seen or not, and one deleted and written again may be seen twice.
// The iteration ends early if the handle is closed or an entry is
// impossible ([Map.Check] then reports it).
func (m *Map) Range() iter.Seq2[[]byte, []byte] {
	return func(yield func(key, val []byte) bool) {
		for i := uint64(0); ; i++ {
			k, v, live, more := m.rangeSlot(i)
			if !more {
				return
			}
			if live && !yield(k, v) {
				return
			}
		}
	}
}

// rangeSlot is Range's look at slot i, a call of its own (the caller's
// yield runs outside any call): more is false once the range must end.
func (m *Map) rangeSlot(i uint64) (key, val []byte, live, more bool) {
	if m.enter() != nil {
		return nil, nil, false, false
	}
	defer m.leave()
	if i >= m.w.g.slots() {
		return nil, nil, false, false
	}
	key, val, live, err := m.w.readSlot(i)
	return key, val, live, err == nil
}

// Check reads every entry as [Map.Range] does and returns the first
// impossible one as [ErrCorrupt], or nil. It takes no lock.
func (m *Map) Check() error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
	for i := range m.w.g.slots() {
		if _, _, _, err := m.w.readSlot(i); err != nil {
			return err
		}
	}
	return nil
}
