//go:build linux

package ipcmap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// heapMap returns a heap map closed at the end of the test.
func heapMap(t testing.TB, opts *Options) *Map {
	t.Helper()
	m, err := NewHeap(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// namedMap returns a named map, closed and removed at the end of the test.
func namedMap(t testing.TB, opts *Options) (*Map, string) {
	t.Helper()
	name := helperproc.Name(t)
	m, err := Create(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); Remove(name) })
	return m, name
}

// contents returns the map's entries, by Range.
func contents(m *Map) map[string]string {
	got := map[string]string{}
	for k, v := range m.Range() {
		got[string(k)] = string(v)
	}
	return got
}

// usedBytes is what UsedBytes must be for the entries in want.
func usedBytes(want map[string]string) int {
	n := 0
	for k, v := range want {
		n += int(recordChunks(uint64(len(k)), uint64(len(v))) * chunkSize)
	}
	return n
}

// checkState fails the test unless m holds exactly want, by every way of
// reading it, and its counters and bitmap agree.
func checkState(t testing.TB, m *Map, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got, ok, err := m.Get([]byte(k))
		if err != nil || !ok || string(got) != v {
			t.Fatalf("Get(%q) = %q, %v, %v; want %q", k, got, ok, err, v)
		}
	}
	if got := contents(m); !maps.Equal(got, want) {
		t.Fatalf("Range = %v, want %v", got, want)
	}
	if n, err := m.Len(); err != nil || n != len(want) {
		t.Fatalf("Len = %d, %v; want %d", n, err, len(want))
	}
	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.UsedBytes != usedBytes(want) {
		t.Fatalf("UsedBytes = %d, want %d for %d entries", st.UsedBytes, usedBytes(want), len(want))
	}
	var bits int
	for i := range m.w.bitmap {
		for x := m.w.bitmap[i].Load(); x != 0; x &= x - 1 {
			bits++
		}
	}
	if bits*chunkSize != st.UsedBytes {
		t.Fatalf("bitmap marks %d chunks, UsedBytes says %d bytes", bits, st.UsedBytes)
	}
	var deleted uint64
	for i := range m.w.slots {
		if m.w.slots[i].word.Load() == wordDeleted {
			deleted++
		}
	}
	if n := m.w.tombs.Load(); n != deleted {
		t.Fatalf("tombs = %d, the table has %d deleted slots", n, deleted)
	}
	if err := m.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestLayout(t *testing.T) {
	if unsafe.Sizeof(slot{}) != slotSize || unsafe.Offsetof(slot{}.word) != 8 {
		t.Fatalf("slot is %d bytes, word at %d", unsafe.Sizeof(slot{}), unsafe.Offsetof(slot{}.word))
	}
	for name, off := range map[string]int{"lock": offLock, "live": offLive, "tombs": offTombs, "used": offUsed,
		"hint": offHint, "deaths": offDeaths, "entries": offEntries, "chunks": offChunks} {
		if off%8 != 0 || off+8 > ctlSize {
			t.Errorf("%s at %d: not an aligned word in the control block", name, off)
		}
	}
	if offLock+robust.Size > offSlotBits {
		t.Errorf("lock (%d bytes at %d) overlaps slotBits at %d", robust.Size, offLock, offSlotBits)
	}
	g, err := geometryFor(1000, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if g.slots() != 2048 || g.chunks != 4096 || g.offBitmap() != ctlSize+2048*16 || g.size() != g.offData()+1<<16 {
		t.Fatalf("geometry for 1000 entries, 64 KiB: %+v, %d slots, size %d", g, g.slots(), g.size())
	}
	// The hash is part of the layout: pin it.
	if h := hash([]byte("ipckit")); h != 0xbd824d092df65577 {
		t.Errorf("hash(ipckit) = %#x; the layout version must change with the hash", h)
	}
}

func TestOperations(t *testing.T) {
	ctx := t.Context()
	for _, mk := range []struct {
		name string
		new  func(t *testing.T) *Map
	}{
		{"heap", func(t *testing.T) *Map { return heapMap(t, nil) }},
		{"anonymous", func(t *testing.T) *Map {
			m, err := New(nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			return m
		}},
		{"named", func(t *testing.T) *Map { m, _ := namedMap(t, nil); return m }},
	} {
		t.Run(mk.name, func(t *testing.T) {
			m := mk.new(t)
			want := map[string]string{}
			if err := m.Set(ctx, []byte("a"), []byte("1")); err != nil {
				t.Fatal(err)
			}
			want["a"] = "1"
			if err := m.Set(ctx, []byte("a"), []byte("one, longer than before")); err != nil {
				t.Fatal(err)
			}
			want["a"] = "one, longer than before"
			if err := m.Set(ctx, []byte(""), []byte("")); err != nil {
				t.Fatal(err)
			}
			want[""] = ""
			if v, ok, err := m.Get([]byte("")); err != nil || !ok || v == nil || len(v) != 0 {
				t.Fatalf("Get of the empty key = %q (nil %v), %v, %v", v, v == nil, ok, err)
			}
			if v, ok, err := m.Get([]byte("nope")); err != nil || ok || v != nil {
				t.Fatalf("Get(nope) = %q, %v, %v", v, ok, err)
			}
			act, loaded, err := m.LoadOrStore(ctx, []byte("a"), []byte("x"))
			if err != nil || !loaded || string(act) != want["a"] {
				t.Fatalf("LoadOrStore(a) = %q, %v, %v", act, loaded, err)
			}
			act, loaded, err = m.LoadOrStore(ctx, []byte("b"), []byte("2"))
			if err != nil || loaded || string(act) != "2" {
				t.Fatalf("LoadOrStore(b) = %q, %v, %v", act, loaded, err)
			}
			want["b"] = "2"
			if ok, err := m.CompareAndSwap(ctx, []byte("b"), []byte("3"), []byte("4")); err != nil || ok {
				t.Fatalf("CompareAndSwap(b, 3, 4) = %v, %v; want false", ok, err)
			}
			if ok, err := m.CompareAndSwap(ctx, []byte("b"), []byte("22"), []byte("4")); err != nil || ok {
				t.Fatalf("CompareAndSwap(b, 22, 4) = %v, %v; want false (a prefix is not equal)", ok, err)
			}
			if ok, err := m.CompareAndSwap(ctx, []byte("a"), []byte("one"), []byte("4")); err != nil || ok {
				t.Fatalf("CompareAndSwap(a, one, 4) = %v, %v; want false (the value only starts with old)", ok, err)
			}
			if ok, err := m.CompareAndSwap(ctx, []byte("c"), nil, []byte("4")); err != nil || ok {
				t.Fatalf("CompareAndSwap(absent c) = %v, %v; want false", ok, err)
			}
			if ok, err := m.CompareAndSwap(ctx, []byte("b"), []byte("2"), []byte("4")); err != nil || !ok {
				t.Fatalf("CompareAndSwap(b, 2, 4) = %v, %v; want true", ok, err)
			}
			want["b"] = "4"
			checkState(t, m, want)
			if ok, err := m.Delete(ctx, []byte("a")); err != nil || !ok {
				t.Fatalf("Delete(a) = %v, %v", ok, err)
			}
			delete(want, "a")
			if ok, err := m.Delete(ctx, []byte("a")); err != nil || ok {
				t.Fatalf("second Delete(a) = %v, %v", ok, err)
			}
			checkState(t, m, want)
			buf := []byte("prefix:")
			buf, ok, err := m.AppendValue(buf, []byte("b"))
			if err != nil || !ok || string(buf) != "prefix:4" {
				t.Fatalf("AppendValue = %q, %v, %v", buf, ok, err)
			}
		})
	}
}

// TestFull fills a map to each of its limits: the write that does not fit
// fails with ErrFull and changes nothing.
func TestFull(t *testing.T) {
	ctx := t.Context()
	t.Run("entries", func(t *testing.T) {
		m := heapMap(t, &Options{Entries: 8, Bytes: 4096})
		want := map[string]string{}
		for i := range 8 {
			k, v := fmt.Sprint("k", i), fmt.Sprint("v", i)
			if err := m.Set(ctx, []byte(k), []byte(v)); err != nil {
				t.Fatal(err)
			}
			want[k] = v
		}
		if err := m.Set(ctx, []byte("k8"), []byte("v8")); !errors.Is(err, ErrFull) {
			t.Fatalf("Set of a 9th key in a map of 8 = %v, want ErrFull", err)
		}
		if _, _, err := m.LoadOrStore(ctx, []byte("k8"), []byte("v8")); !errors.Is(err, ErrFull) {
			t.Fatalf("LoadOrStore of a 9th key = %v, want ErrFull", err)
		}
		// Replacing a value needs no new entry.
		if err := m.Set(ctx, []byte("k3"), []byte("new")); err != nil {
			t.Fatal(err)
		}
		want["k3"] = "new"
		checkState(t, m, want)
	})
	t.Run("bytes", func(t *testing.T) {
		m := heapMap(t, &Options{Entries: 64, Bytes: 10 * 64})
		want := map[string]string{}
		val := string(bytes.Repeat([]byte("v"), 48)) // 8+8+48 = 64 bytes: 4 chunks
		for i := range 10 {
			k := fmt.Sprint("k", i)
			if err := m.Set(ctx, []byte(k), []byte(val)); err != nil {
				t.Fatal(err)
			}
			want[k] = val
		}
		if err := m.Set(ctx, []byte("k10"), []byte("x")); !errors.Is(err, ErrFull) {
			t.Fatalf("Set into a full data area = %v, want ErrFull", err)
		}
		// Replacing a value needs room for the new one before the old is
		// freed: it too is refused, and the old value stays.
		if err := m.Set(ctx, []byte("k1"), []byte("short")); !errors.Is(err, ErrFull) {
			t.Fatalf("Set of k1 in a full data area = %v, want ErrFull", err)
		}
		checkState(t, m, want)
		// Free two runs that are not neighbours: 128 bytes free, no run of
		// 128. Then free the one between them: the runs merge.
		for _, k := range []string{"k3", "k5"} {
			m.Delete(ctx, []byte(k))
			delete(want, k)
		}
		long := string(bytes.Repeat([]byte("L"), 100)) // 8+8+100 -> 128 bytes
		if err := m.Set(ctx, []byte("kL"), []byte(long)); !errors.Is(err, ErrFull) {
			t.Fatalf("Set of a 128-byte entry into two free runs of 64 = %v, want ErrFull (fragmented)", err)
		}
		m.Delete(ctx, []byte("k4"))
		delete(want, "k4")
		if err := m.Set(ctx, []byte("kL"), []byte(long)); err != nil {
			t.Fatalf("Set of a 128-byte entry into a merged free run of 192 = %v", err)
		}
		want["kL"] = long
		checkState(t, m, want)
	})
	t.Run("too large", func(t *testing.T) {
		m := heapMap(t, &Options{Entries: 4, Bytes: 64})
		if err := m.Set(ctx, []byte("k"), make([]byte, 64)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Set of an entry larger than the map = %v, want ErrTooLarge", err)
		}
		checkState(t, m, map[string]string{})
	})
}

// TestChurn sets and deletes many more keys than the map holds: deleted
// slots and freed bytes are reused, and no probe goes wrong.
func TestChurn(t *testing.T) {
	ctx := t.Context()
	m := heapMap(t, &Options{Entries: 16, Bytes: 16 * 128})
	want := map[string]string{}
	for i := range 5000 {
		k := fmt.Sprint("key-", i%37)
		if _, ok := want[k]; ok && i%3 != 0 {
			if ok, err := m.Delete(ctx, []byte(k)); err != nil || !ok {
				t.Fatalf("op %d: Delete(%s) = %v, %v", i, k, ok, err)
			}
			delete(want, k)
			continue
		}
		if len(want) == 16 {
			if _, ok := want[k]; !ok {
				continue
			}
		}
		v := fmt.Sprint(i, strings.Repeat(".", i%30))
		if err := m.Set(ctx, []byte(k), []byte(v)); err != nil {
			t.Fatalf("op %d: Set(%s) with %d live: %v", i, k, len(want), err)
		}
		want[k] = v
	}
	checkState(t, m, want)
	var empty, deleted uint64
	for i := range m.w.slots {
		switch m.w.slots[i].word.Load() {
		case wordEmpty:
			empty++
		case wordDeleted:
			deleted++
		}
	}
	if deleted != m.w.tombs.Load() || empty < m.w.g.slots()/8 {
		t.Errorf("after churn: %d deleted slots (counter %d), %d empty, of %d", deleted, m.w.tombs.Load(), empty, m.w.g.slots())
	}
}

func TestOptionsInvalid(t *testing.T) {
	for _, o := range []Options{{Entries: -1}, {Bytes: 8}, {Entries: 1 << 30}, {Bytes: -5}} {
		if _, err := NewHeap(&o); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("NewHeap(%+v) = %v, want os.ErrInvalid", o, err)
		}
	}
}

func TestClose(t *testing.T) {
	m, err := NewHeap(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	ctx := t.Context()
	if _, _, err := m.Get([]byte("k")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}
	if err := m.Set(ctx, []byte("k"), nil); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Set after Close = %v", err)
	}
	if _, err := m.Delete(ctx, []byte("k")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Delete after Close = %v", err)
	}
	if _, err := m.Len(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Len after Close = %v", err)
	}
	if n := len(slices.Collect(maps.Keys(contents(m)))); n != 0 {
		t.Errorf("Range after Close yielded %d entries", n)
	}
	var zero Map
	if _, _, err := zero.Get(nil); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Get on the zero Map = %v", err)
	}
	if err := zero.Close(); err != nil {
		t.Errorf("Close of the zero Map = %v", err)
	}
}

// TestOpenWrongKind opens a queue's name as a map.
func TestOpenWrongKind(t *testing.T) {
	name := helperproc.Name(t)
	seg, err := shm.KindBytes.Create(name, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { seg.Close(); shm.Remove(name) }()
	if _, err := Open(name); !errors.Is(err, shm.ErrKind) {
		t.Fatalf("Open of a bytes segment = %v, want shm.ErrKind", err)
	}
}

func TestTyped(t *testing.T) {
	ctx := context.Background()
	type point struct{ X, Y int64 }
	type named struct {
		Name string
		Tags []string
	}
	m := heapMap(t, nil)
	p := NewTyped[string, point](m)
	if !p.raw {
		t.Fatal("point does not use raw bytes")
	}
	if err := p.Set(ctx, "a", point{1, 2}); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := p.Get("a"); err != nil || !ok || v != (point{1, 2}) {
		t.Fatalf("Get(a) = %v, %v, %v", v, ok, err)
	}
	if ok, err := p.CompareAndSwap(ctx, "a", point{1, 2}, point{3, 4}); err != nil || !ok {
		t.Fatalf("CompareAndSwap = %v, %v", ok, err)
	}
	if v, loaded, err := p.LoadOrStore(ctx, "a", point{9, 9}); err != nil || !loaded || v != (point{3, 4}) {
		t.Fatalf("LoadOrStore(a) = %v, %v, %v", v, loaded, err)
	}
	// A value of the wrong length for a point is ErrCorrupt.
	m.Set(ctx, []byte("bad"), []byte("short"))
	if _, _, err := p.Get("bad"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of a 5-byte point = %v, want ErrCorrupt", err)
	}
	m.Delete(ctx, []byte("bad"))

	n := NewTyped[[]byte, named](heapMap(t, nil))
	if n.raw {
		t.Fatal("a struct with a string uses raw bytes")
	}
	v := named{"x", []string{"p", "q"}}
	if err := n.Set(ctx, []byte("k"), v); err != nil {
		t.Fatal(err)
	}
	got, ok, err := n.Get([]byte("k"))
	if err != nil || !ok || got.Name != "x" || !slices.Equal(got.Tags, v.Tags) {
		t.Fatalf("Get(k) = %+v, %v, %v", got, ok, err)
	}
	for k, v := range n.Range() {
		if string(k) != "k" || v.Name != "x" {
			t.Fatalf("Range yielded %q, %+v", k, v)
		}
	}
	if ok, err := n.Delete(ctx, []byte("k")); err != nil || !ok {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	for _, c := range []struct {
		v    any
		want bool
	}{
		{int32(0), true}, {[4]float64{}, true}, {struct {
			A int32
			B int64
		}{}, false}, {struct{ A, B int32 }{}, true}, {true, false}, {"s", false}, {struct{ B bool }{}, false},
	} {
		if got := rawBytes(reflectType(c.v)); got != c.want {
			t.Errorf("rawBytes(%T) = %v, want %v", c.v, got, c.want)
		}
	}
}

// TestPurge deletes keys in the middle of probe chains until more than a
// quarter of the slots are deleted: the delete that crosses that line
// empties every deleted slot that no chain crosses (all of them here), and
// every key stays found.
func TestPurge(t *testing.T) {
	c := crashCase("delete-purge")
	m := heapMap(t, c.opts)
	want, err := c.fill(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := m.Delete(t.Context(), []byte(c.key)); err != nil || !ok {
		t.Fatalf("Delete(%s) = %v, %v", c.key, ok, err)
	}
	delete(want, c.key)
	if n := m.w.tombs.Load(); n != 0 {
		t.Fatalf("%d deleted slots left after a purge, want 0", n)
	}
	checkState(t, m, want)
}
