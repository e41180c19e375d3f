package ipcmap

// The chunk allocator (see "Writing", Allocation): a bitmap of the data
// area's chunks, used by writers only, under the lock. Its words are
// atomic only so that the heap map's race test and a reader of Stats see
// no data race; no reader of entries looks at it.

// alloc finds a run of n free chunks, next-fit from the hint, marks it and
// returns its first chunk; false if there is none (nothing changes).
func (w *words) alloc(n uint64) (uint64, bool) {
	total := w.g.chunks
	if n == 0 || n > total || w.used.Load() > total-n {
		return 0, false
	}
	start := w.hint.Load()
	if start >= total {
		start = 0
	}
	c, ok := w.scanRun(start, total, n)
	if !ok && start > 0 {
		c, ok = w.scanRun(0, min(start+n-1, total), n)
	}
	if !ok {
		return 0, false
	}
	w.markRun(c, n, true)
	w.used.Add(n)
	w.hint.Store(c + n)
	return c, true
}

// free unmarks the run of n chunks from c.
func (w *words) free(c, n uint64) {
	w.markRun(c, n, false)
	w.used.Add(-n)
}

// scanRun returns the first chunk of a run of n free chunks within
// [from, to), skipping whole words that are full or empty.
func (w *words) scanRun(from, to, n uint64) (uint64, bool) {
	var run uint64
	for c := from; c < to; {
		word := w.bitmap[c/64].Load()
		if c%64 == 0 && c+64 <= to {
			switch word {
			case ^uint64(0):
				run = 0
				c += 64
				continue
			case 0:
				run += 64
				c += 64
				if run >= n {
					return c - run, true
				}
				continue
			}
		}
		if word&(1<<(c%64)) != 0 {
			run = 0
		} else if run++; run == n {
			return c + 1 - n, true
		}
		c++
	}
	return 0, false
}

// runFree reports whether the n chunks from c are all free.
func (w *words) runFree(c, n uint64) bool {
	for end := c + n; c < end; {
		bits := min(64-c%64, end-c)
		mask := (^uint64(0) >> (64 - bits)) << (c % 64)
		if w.bitmap[c/64].Load()&mask != 0 {
			return false
		}
		c += bits
	}
	return true
}

// markRun sets (on) or clears the bits of the n chunks from c.
func (w *words) markRun(c, n uint64, on bool) {
	for end := c + n; c < end; {
		bits := min(64-c%64, end-c)
		mask := (^uint64(0) >> (64 - bits)) << (c % 64)
		if on {
			w.bitmap[c/64].Or(mask)
		} else {
			w.bitmap[c/64].And(^mask)
		}
		c += bits
	}
}
