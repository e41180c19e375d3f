//go:build linux

package ipctopic

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/ipckit/ipckit/shm"
)

// attachBytes builds a topic handle over a heap segment holding image.
func attachBytes(image []byte) (*Topic, error) {
	seg, err := shm.KindTopic.NewHeap(len(image))
	if err != nil {
		return nil, err
	}
	copy(seg.Bytes(), image)
	return attach(seg)
}

// goodImage is a block-policy topic of 4 slots with one subscriber (entry
// 0) that has not read message 0 of the 2 published.
func goodImage(t testing.TB) []byte {
	tp, err := NewHeap(&Options{Slots: 4, MaxMsg: 16, Subscribers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ctx := context.Background()
	s, err := tp.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tp.Publish(ctx, []byte("zero"))
	tp.Publish(ctx, []byte("one"))
	img := append([]byte(nil), tp.Segment().Bytes()...)
	s.Close()
	// The subscriber's entry as the image holds it: owned by this process.
	binary.LittleEndian.PutUint64(img[ctlSize+subOwner:], uint64(tp.plock.Token()))
	return img
}

// TestCorruptHeader changes one field of the control block, of the
// subscriber table or of a slot, and expects ErrCorrupt from attaching or
// from the first call that reads it: never a panic, a hang or a torn
// message.
func TestCorruptHeader(t *testing.T) {
	good := goodImage(t)
	le := binary.LittleEndian
	ring := uint64(ctlSize + 2*subStride)
	for _, c := range []struct {
		name string
		edit func(b []byte)
		open bool // the error comes from attaching
		call string
	}{
		{"magic", func(b []byte) { b[offMagic] ^= 1 }, true, ""},
		{"version", func(b []byte) { le.PutUint32(b[offVersion:], 9) }, true, ""},
		{"checksum", func(b []byte) { b[offCRC] ^= 1 }, true, ""},
		{"slots", func(b []byte) { le.PutUint64(b[offSlots:], 1<<20); writeConfigCRC(b) }, true, ""},
		{"slots not a power of two", func(b []byte) { le.PutUint64(b[offSlots:], 3); writeConfigCRC(b) }, true, ""},
		{"max message", func(b []byte) { le.PutUint64(b[offMaxMsg:], 0); writeConfigCRC(b) }, true, ""},
		{"subscribers", func(b []byte) { le.PutUint32(b[offSubs:], 0); writeConfigCRC(b) }, true, ""},
		{"subscribers past the end", func(b []byte) { le.PutUint32(b[offSubs:], 1<<16); writeConfigCRC(b) }, true, ""},
		{"policy", func(b []byte) { le.PutUint32(b[offPolicy:], 7); writeConfigCRC(b) }, true, ""},
		{"tail", func(b []byte) { le.PutUint64(b[offTail:], 1<<63) }, false, "publish"},
		{"cursor beyond tail", func(b []byte) { le.PutUint64(b[ctlSize+subCursor:], 9) }, false, "publish"},
		{"publisher lock word", func(b []byte) { le.PutUint64(b[offPLock:], 3<<62|5) }, false, "publish"},
		{"message length", func(b []byte) { le.PutUint64(b[ring+slotLen:], 17) }, false, "recv"},
		{"stamp from the future", func(b []byte) { le.PutUint64(b[ring+slotStamp:], 9) }, false, "recv"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := append([]byte(nil), good...)
			c.edit(img)
			tp, err := attachBytes(img)
			if c.open {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("attach = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tp.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			switch c.call {
			case "publish":
				for range 4 { // past the ring's room, so that cursors are read
					if err = tp.Publish(ctx, []byte("x")); err != nil {
						break
					}
				}
			case "recv":
				s := &Subscriber{t: tp, token: uint64(tp.plock.Token())}
				s.owner, s.cursor = tp.entry(0)
				_, err = s.Recv(ctx)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s = %v, want ErrCorrupt", c.call, err)
			}
		})
	}
	if _, err := attachBytes(good[:ctlSize-8]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a segment too short: %v", err)
	}
	if _, err := attachBytes(good[:len(good)-8]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a segment one word short of its ring: %v", err)
	}
}

// FuzzCorrupt writes arbitrary bytes over a good topic, then inspects it,
// attaches and uses it with a short deadline: errors are fine, a panic, an
// out-of-range access or a hang are not.
func FuzzCorrupt(f *testing.F) {
	good := goodImage(f)
	f.Add(uint16(offSlots), []byte{3}, true)
	f.Add(uint16(offTail), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, false)
	f.Add(uint16(ctlSize+subCursor), []byte{200}, false)
	f.Add(uint16(ctlSize+2*subStride+slotLen), []byte{0xff, 0xff}, false)
	f.Add(uint16(ctlSize+2*subStride+slotStamp), []byte{5, 0, 0, 0, 0, 0, 0, 0x80}, false)
	f.Add(uint16(offPolicy), []byte{1}, true)
	f.Fuzz(func(t *testing.T, off uint16, val []byte, crc bool) {
		img := append([]byte(nil), good...)
		copy(img[int(off)%len(img):], val)
		if crc {
			writeConfigCRC(img)
		}
		Inspect(img) // an error, or a state; never a panic
		tp, err := attachBytes(img)
		if err != nil {
			return
		}
		defer tp.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
		defer cancel()
		s := &Subscriber{t: tp, token: uint64(tp.plock.Token())}
		s.owner, s.cursor = tp.entry(0)
		s.pos = s.cursor.Load()
		for range 3 {
			tp.Publish(ctx, []byte("fuzz"))
			s.Recv(ctx)
			s.Read(ctx, func([]byte) error { return nil })
		}
		if sub, err := tp.Subscribe(ctx); err == nil {
			sub.Recv(ctx)
		}
		tp.Stats()
		// Not Shutdown: like the queue's, it waits for the publisher lock
		// without a deadline, and a lock word naming a process whose
		// liveness cannot be proven is waited for, rightly.
	})
}
