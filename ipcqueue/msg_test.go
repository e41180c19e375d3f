package ipcqueue

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Test messages: producer id (4 bytes), sequence number (8), filler whose
// length depends on the sequence, CRC-32 of all that (4).

func makeMsg(buf []byte, producer int, seq uint64) []byte {
	n := 16 + int(seq*7%97)
	b := buf[:n]
	binary.LittleEndian.PutUint32(b, uint32(producer))
	binary.LittleEndian.PutUint64(b[4:], seq)
	for i := 12; i < n-4; i++ {
		b[i] = byte(seq) + byte(i)
	}
	binary.LittleEndian.PutUint32(b[n-4:], crc32.ChecksumIEEE(b[:n-4]))
	return b
}

func parseMsg(b []byte) (producer int, seq uint64, err error) {
	if len(b) < 16 {
		return 0, 0, fmt.Errorf("short message: %d bytes", len(b))
	}
	n := len(b)
	if crc32.ChecksumIEEE(b[:n-4]) != binary.LittleEndian.Uint32(b[n-4:]) {
		return 0, 0, fmt.Errorf("torn message (checksum): % x", b)
	}
	producer = int(binary.LittleEndian.Uint32(b))
	seq = binary.LittleEndian.Uint64(b[4:])
	if n != 16+int(seq*7%97) {
		return 0, 0, fmt.Errorf("message %d/%d has %d bytes", producer, seq, n)
	}
	return producer, seq, nil
}

// checker verifies that one consumer sees each producer's messages in
// increasing order, and records which it saw.
type checker struct {
	last []int64
	seen [][]uint64 // bitmap per producer
}

func newChecker(producers, perProducer int) *checker {
	c := &checker{last: make([]int64, producers), seen: make([][]uint64, producers)}
	for i := range c.last {
		c.last[i] = -1
		c.seen[i] = make([]uint64, (perProducer+63)/64)
	}
	return c
}

func (c *checker) add(b []byte) error {
	p, seq, err := parseMsg(b)
	if err != nil {
		return err
	}
	if p < 0 || p >= len(c.last) || seq >= uint64(len(c.seen[p])*64) {
		return fmt.Errorf("message from producer %d seq %d out of range", p, seq)
	}
	if int64(seq) <= c.last[p] {
		return fmt.Errorf("producer %d: seq %d after %d", p, seq, c.last[p])
	}
	c.last[p] = int64(seq)
	c.seen[p][seq/64] |= 1 << (seq % 64)
	return nil
}

// merge adds o's bitmaps to c's, failing on a message both saw.
func (c *checker) merge(o *checker) error {
	for p := range c.seen {
		for i, w := range o.seen[p] {
			if c.seen[p][i]&w != 0 {
				return fmt.Errorf("producer %d: a message near seq %d delivered twice", p, i*64)
			}
			c.seen[p][i] |= w
		}
	}
	return nil
}

// complete fails unless every producer's perProducer messages were seen.
func (c *checker) complete(perProducer int) error {
	for p := range c.seen {
		for s := range perProducer {
			if c.seen[p][s/64]&(1<<(s%64)) == 0 {
				return fmt.Errorf("producer %d: seq %d never delivered", p, s)
			}
		}
	}
	return nil
}
