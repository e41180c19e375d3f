package ipcqueue

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ipckit/ipckit/shm"
)

// attachBytes builds a queue handle over a heap segment holding image.
func attachBytes(image []byte) (*Queue, error) {
	seg, err := shm.NewHeap(len(image), &shm.Options{Kind: shm.KindQueue})
	if err != nil {
		return nil, err
	}
	copy(seg.Bytes(), image)
	return attach(seg, nil)
}

// TestCorruptHeader flips fields of the control block and of records, and
// expects ErrCorrupt, never a panic.
func TestCorruptHeader(t *testing.T) {
	q := heapQueue(t, 1024, nil)
	ctx := t.Context()
	q.Put(ctx, []byte("hello"))
	good := append([]byte(nil), q.Segment().Bytes()...)
	le := binary.LittleEndian
	for _, c := range []struct {
		name string
		edit func(b []byte)
		open bool // the error comes from attaching, not from Get/Put
	}{
		{"magic", func(b []byte) { b[offMagic] ^= 1 }, true},
		{"version", func(b []byte) { le.PutUint32(b[offVersion:], 9) }, true},
		{"capacity", func(b []byte) { le.PutUint64(b[offCap:], 1<<30) }, true},
		{"checksum", func(b []byte) { b[offCRC] ^= 1 }, true},
		{"head misaligned", func(b []byte) { le.PutUint64(b[offHead:], 3) }, false},
		{"tail far ahead", func(b []byte) { le.PutUint64(b[offTail:], 1<<40); le.PutUint64(b[offFreed:], 0) }, false},
		{"record length", func(b []byte) { le.PutUint32(b[ctlSize:], flagCommit|5000) }, false},
		{"record tag", func(b []byte) { le.PutUint32(b[ctlSize+4:], 77) }, false},
		{"padding length", func(b []byte) { le.PutUint32(b[ctlSize:], flagCommit|flagPadding|8) }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := append([]byte(nil), good...)
			c.edit(img)
			q, err := attachBytes(img)
			if c.open {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("attach = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer q.Detach()
			_, _, gerr := q.TryGet()
			_, perr := q.TryPut(make([]byte, 200))
			for range 8 {
				if perr == nil {
					_, perr = q.TryPut(make([]byte, 200))
				}
			}
			if !errors.Is(gerr, ErrCorrupt) && !errors.Is(perr, ErrCorrupt) {
				t.Fatalf("TryGet = %v, TryPut = %v, want ErrCorrupt", gerr, perr)
			}
		})
	}
}

// FuzzQueue decodes an arbitrary control block and ring, then runs a few
// TryGet and TryPut calls: errors are fine, panics and hangs are not.
func FuzzQueue(f *testing.F) {
	q, _ := NewHeap(256, nil)
	q.Put(f.Context(), []byte("seed"))
	q.Put(f.Context(), make([]byte, 60))
	f.Add(append([]byte(nil), q.Segment().Bytes()...))
	q.Detach()
	f.Fuzz(func(t *testing.T, image []byte) {
		if len(image) < ctlSize+minCapacity {
			return
		}
		le := binary.LittleEndian
		// Keep the locks free (a held lock would only make Try* report
		// busy) and repair the checksum often enough to reach the ring.
		le.PutUint64(image[offPLock:], 0)
		le.PutUint64(image[offCLock:], 0)
		if image[offCRC+3]&1 == 0 {
			writeConfig(image[:ctlSize], config{le.Uint64(image[offCap:]), le.Uint64(image[offMaxMsg:])})
		}
		q, err := attachBytes(image)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("attach error %v is not ErrCorrupt", err)
			}
			return
		}
		defer q.Detach()
		buf := make([]byte, 64)
		for i := range 8 {
			q.TryGet()
			q.TryGetInto(buf)
			q.TryPut(buf[:i*9])
			q.Len()
		}
	})
}

func TestDecodeHeader(t *testing.T) {
	const c, maxMsg = 1024, 200
	for _, x := range []struct {
		w, pos uint64
		kind   int
		ok     bool
	}{
		{0, 8, recEmpty, true},
		{mkHeader(8, 10, false), 8, recMessage, true},
		{mkHeader(8, 10, false), 16, 0, false},                        // wrong tag
		{mkHeader(8, 201, false), 8, 0, false},                        // over maxMsg
		{mkHeader(1016, 0, true), 1016, recPadding, true},             // padding to the end
		{mkHeader(1000, 0, true), 1000, 0, false},                     // padding short of the end
		{mkHeader(1016, 10, false), 1016, 0, false},                   // runs past the end
		{mkHeader(8, 10, false) &^ flagCommit, 8, 0, false},           // not committed
		{mkHeader(^uint64(7), 0, true), ^uint64(7), recPadding, true}, // wrapped position
	} {
		kind, _, err := decodeHeader(x.w, x.pos, c, maxMsg)
		if (err == nil) != x.ok || (x.ok && kind != x.kind) {
			t.Errorf("decodeHeader(%#x, %d) = %d, %v", x.w, x.pos, kind, err)
		}
	}
}
