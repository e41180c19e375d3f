//go:build linux

package ipcmap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ipckit/ipckit/shm"
)

// attachImage builds a map handle over a heap segment holding image.
func attachImage(t testing.TB, image []byte) (*Map, error) {
	seg, err := shm.KindMap.NewHeap(len(image))
	if err != nil {
		t.Fatal(err)
	}
	copy(seg.Bytes(), image)
	m, err := attach(seg)
	if err == nil {
		t.Cleanup(func() { m.Close() })
	}
	return m, err
}

// goodImage returns the bytes of a small map with a few entries, and the
// entries.
func goodImage(t testing.TB) ([]byte, map[string]string) {
	m := heapMap(t, &Options{Entries: 8, Bytes: 512})
	want := map[string]string{}
	for i := range 5 {
		k, v := fmt.Sprint("key", i), fmt.Sprint("value number ", i)
		if err := m.Set(context.Background(), []byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	return append([]byte(nil), m.Segment().Bytes()...), want
}

// liveSlot returns the index of the first live slot in image.
func liveSlot(image []byte) int {
	for i := 0; ctlSize+i*slotSize < len(image); i++ {
		if binary.LittleEndian.Uint64(image[ctlSize+i*slotSize+8:]) > wordDeleted {
			return i
		}
	}
	return -1
}

// exercise runs every operation on m and returns the errors that are not
// ErrCorrupt (or a timeout on a lock that a corrupt word says is held).
func exercise(m *Map, keys map[string]string) []error {
	var bad []error
	note := func(op string, err error) {
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFull) &&
			!errors.Is(err, ErrOwnerDead) && !errors.Is(err, context.DeadlineExceeded) {
			bad = append(bad, fmt.Errorf("%s: %w", op, err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
	defer cancel()
	for k := range keys {
		_, _, err := m.Get([]byte(k))
		note("Get", err)
	}
	for range m.Range() {
	}
	note("Check", m.Check())
	_, err := m.Len()
	note("Len", err)
	_, err = m.Stats()
	note("Stats", err)
	note("Set", m.Set(ctx, []byte("key1"), []byte("new")))
	note("Set", m.Set(ctx, []byte("another"), []byte("new")))
	_, err = m.CompareAndSwap(ctx, []byte("key2"), []byte("value number 2"), []byte("x"))
	note("CompareAndSwap", err)
	_, _, err = m.LoadOrStore(ctx, []byte("key9"), []byte("x"))
	note("LoadOrStore", err)
	for k := range keys {
		_, err = m.Delete(ctx, []byte(k))
		note("Delete", err)
	}
	return bad
}

// TestCorrupt changes one thing in a map's memory at a time and expects
// ErrCorrupt from attaching or from the calls that read it, never a panic.
func TestCorrupt(t *testing.T) {
	good, keys := goodImage(t)
	le := binary.LittleEndian
	s := liveSlot(good)
	word := le.Uint64(good[ctlSize+s*slotSize+8:])
	g, _ := readGeometry(good)
	rec := int(g.offData()) + int(chunkOf(word))*chunkSize
	for _, c := range []struct {
		name   string
		edit   func(b []byte)
		attach bool // attaching fails
	}{
		{"magic", func(b []byte) { b[offMagic] ^= 1 }, true},
		{"version", func(b []byte) { le.PutUint32(b[offVersion:], 2) }, true},
		{"slot bits", func(b []byte) { le.PutUint32(b[offSlotBits:], 31) }, true},
		{"entries beyond half the slots", func(b []byte) { le.PutUint64(b[offEntries:], 9) }, true},
		{"chunks against the size", func(b []byte) { le.PutUint64(b[offChunks:], 33) }, true},
		{"truncated", nil, true},
		{"slot word past the data", func(b []byte) { le.PutUint64(b[ctlSize+s*slotSize+8:], liveWord(1<<20, tagOf(word))) }, false},
		{"record key length", func(b []byte) { le.PutUint64(b[rec:], 1<<31) }, false},
		{"record value length", func(b []byte) { le.PutUint64(b[rec:], 1<<40|4) }, false},
		{"live count", func(b []byte) { le.PutUint64(b[offLive:], 1000) }, false},
		{"used count", func(b []byte) { le.PutUint64(b[offUsed:], 1<<40) }, false},
		{"hint", func(b []byte) { le.PutUint64(b[offHint:], 1<<50) }, false},
		{"lock word", func(b []byte) { le.PutUint64(b[offLock:], 3<<62|5) }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := append([]byte(nil), good...)
			if c.edit != nil {
				c.edit(img)
			} else {
				img = img[:len(img)-16]
			}
			m, err := attachImage(t, img)
			if c.attach {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("attach = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("attach = %v", err)
			}
			if bad := exercise(m, keys); len(bad) > 0 {
				t.Fatal(errors.Join(bad...))
			}
		})
	}
	t.Run("record length read", func(t *testing.T) {
		img := append([]byte(nil), good...)
		le.PutUint64(img[rec:], 1<<31)
		m, err := attachImage(t, img)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for k := range keys {
			if _, _, err := m.Get([]byte(k)); errors.Is(err, ErrCorrupt) {
				found = true
			}
		}
		if !found || !errors.Is(m.Check(), ErrCorrupt) {
			t.Fatalf("no Get and no Check reported a record longer than the data area (Check: %v)", m.Check())
		}
		if n, err := m.Len(); err != nil || n != len(keys) {
			t.Fatalf("Len = %d, %v", n, err)
		}
	})
}

// attachAndExercise attaches to img and runs every operation: attaching
// may fail with ErrCorrupt, the operations with the errors exercise
// allows, nothing else.
func attachAndExercise(t *testing.T, img []byte, keys map[string]string) {
	m, err := attachImage(t, img)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("attach = %v, want nil or ErrCorrupt", err)
		}
		return
	}
	if bad := exercise(m, keys); len(bad) > 0 {
		t.Fatal(errors.Join(bad...))
	}
}

// FuzzImage flips bytes of a good map's memory (each 3 fuzz bytes: a
// 16-bit offset and a mask) and runs every operation on it: errors are
// fine, a panic (an out-of-range index into shared memory among them) or
// a hang is not.
func FuzzImage(f *testing.F) {
	good, keys := goodImage(f)
	f.Add([]byte{})
	f.Add([]byte{offSlotBits, 0, 1})
	f.Add([]byte{byte(ctlSize + 8), 0, 0xff, byte(ctlSize + 24), 0, 0x80})
	g, _ := readGeometry(good)
	d := int(g.offData())
	f.Add([]byte{byte(d), byte(d >> 8), 0x7f, byte(d + 3), byte((d + 3) >> 8), 0x40})
	f.Fuzz(func(t *testing.T, patch []byte) {
		img := append([]byte(nil), good...)
		for ; len(patch) >= 3; patch = patch[3:] {
			img[int(binary.LittleEndian.Uint16(patch))%len(img)] ^= patch[2]
		}
		attachAndExercise(t, img, keys)
	})
}

// FuzzAttach attaches to arbitrary bytes.
func FuzzAttach(f *testing.F) {
	good, keys := goodImage(f)
	f.Add(good)
	f.Add(good[:ctlSize])
	f.Fuzz(func(t *testing.T, img []byte) {
		attachAndExercise(t, img, keys)
	})
}

// TestCorruptCounters: a counter in the control block that is impossible
// for the map's shape makes every write fail with ErrCorrupt (not ErrFull,
// which would blame the caller's data), changing nothing; readers go on.
func TestCorruptCounters(t *testing.T) {
	good, keys := goodImage(t)
	le := binary.LittleEndian
	for _, c := range []struct {
		name string
		off  int
	}{{"live", offLive}, {"used", offUsed}, {"tombs", offTombs}} {
		t.Run(c.name, func(t *testing.T) {
			img := append([]byte(nil), good...)
			le.PutUint64(img[c.off:], 1<<40)
			m, err := attachImage(t, img)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Set(t.Context(), []byte("another"), []byte("v")); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Set of a new key = %v, want ErrCorrupt", err)
			}
			if err := m.Set(t.Context(), []byte("key1"), []byte("v")); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Set of a present key = %v, want ErrCorrupt", err)
			}
			if _, err := m.Delete(t.Context(), []byte("key2")); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Delete = %v, want ErrCorrupt", err)
			}
			for k, v := range keys {
				if got, ok, err := m.Get([]byte(k)); err != nil || !ok || string(got) != v {
					t.Errorf("Get(%q) = %q, %v, %v; want %q", k, got, ok, err, v)
				}
			}
		})
	}
}
