package ipcqueue

import (
	"bytes"
	"fmt"
	"testing"
)

// documentedFit is how many messages of cost c (length rounded up to 8,
// plus 8) fit in an empty queue whose next record goes at ring offset off,
// by the rule Capacity's doc states: their records, plus the padding before
// a record that would cross the end of the ring (to that end), take at
// most capacity bytes of the ring's r.
func documentedFit(r, capacity, off, c int) int {
	used, pos, n := 0, off, 0
	for {
		pad := 0
		if pos%r+c > r {
			pad = r - pos%r
		}
		if used+pad+c > capacity {
			return n
		}
		used += pad + c
		pos += pad + c
		n++
	}
}

// TestCapacityExact fills queues of several sizes, from every ring offset
// the indices reach, with messages of several lengths, to exactly the
// documented count, and checks that one more does not fit (TryPut false)
// and that what comes out is what went in. For a cost that is a power of
// two, the count is Capacity/cost at every offset.
func TestCapacityExact(t *testing.T) {
	for _, r := range []int{64, 256, 1024, 4096} {
		for _, length := range []int{0, 1, 8, 16, 24, 40, 56, 88, 120, 248, 500} {
			if uint64(length) > maxMsgFor(uint64(r)) {
				continue
			}
			t.Run(fmt.Sprintf("ring=%d/len=%d", r, length), func(t *testing.T) {
				q := heapQueue(t, r, &Options{MaxMsg: int(maxMsgFor(uint64(r)))})
				if q.Capacity() != r-8 {
					t.Fatalf("Capacity %d, want %d", q.Capacity(), r-8)
				}
				msg := bytes.Repeat([]byte{0xa5}, length)
				buf := make([]byte, length)
				step := 8 // every offset; one in 7 on the largest ring
				if r > 1024 {
					step = 56
				}
				for target := 0; target < r; target += step {
					// Move the indices to the target offset with empty
					// messages (8 bytes each), put and got.
					for q.tail.Load()&q.mask != uint64(target) {
						if ok, err := q.TryPut(nil); !ok || err != nil {
							t.Fatalf("TryPut of an empty message = %v, %v", ok, err)
						}
						if _, ok, err := q.TryGetInto(buf); !ok || err != nil {
							t.Fatalf("TryGetInto of an empty message = %v, %v", ok, err)
						}
					}
					fillExactly(t, q, target, msg, buf)
				}
			})
		}
	}
}

// fillExactly fills the empty q, whose next record goes at ring offset off,
// with messages of msg's length to the documented count, checks that one
// more does not fit, and drains it.
func fillExactly(t *testing.T, q *Queue, off int, msg, buf []byte) {
	t.Helper()
	c := int(recLen(len(msg)))
	want := documentedFit(int(q.size), q.Capacity(), off, c)
	if c&(c-1) == 0 && want != q.Capacity()/c {
		t.Fatalf("offset %d: the documented count %d of %d-byte records is not Capacity/cost", off, want, c)
	}
	for i := range want {
		if len(msg) > 0 {
			msg[0] = byte(i)
		}
		if ok, err := q.TryPut(msg); !ok || err != nil {
			t.Fatalf("offset %d: message %d of %d did not fit: %v, %v", off, i+1, want, ok, err)
		}
	}
	if ok, err := q.TryPut(msg); ok || err != nil {
		t.Fatalf("offset %d: message %d fit, beyond the documented %d (cost %d, capacity %d): %v",
			off, want+1, want, c, q.Capacity(), err)
	}
	for i := range want {
		n, ok, err := q.TryGetInto(buf)
		if !ok || err != nil || n != len(msg) || (n > 0 && buf[0] != byte(i)) {
			t.Fatalf("offset %d: message %d came out as %x, %v, %v", off, i, buf[:n], ok, err)
		}
	}
}
