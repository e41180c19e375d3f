//go:build linux

package ipcmap

import (
	"errors"
	"testing"

	"github.com/ipckit/ipckit/shm"
)

// inspectMap reads the named map as cmd/ipcs does: a read-only mapping,
// through the inspector registered for shm.KindMap.
func inspectMap(t *testing.T, name string) MapState {
	t.Helper()
	info, err := shm.Inspect(name)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := info.Report.(MapState)
	if !ok {
		t.Fatalf("report on a map is %T, want MapState", info.Report)
	}
	return st
}

// TestInspect reads a map through shm.Inspect: its counts and capacity
// as Stats gives them, its deleted slots, and the writers' lock, free,
// then held by a stalled writer (alive), then by the same writer killed
// (dead), which the inspector neither repairs nor counts.
func TestInspect(t *testing.T) {
	m, want, p := stalled(t, "stallwrite", "stalled")
	defer p.Kill()
	st := inspectMap(t, m.Segment().Name())
	stats, _ := m.Stats()
	if st.Stats != stats || st.Slots != int(m.w.g.slots()) || st.Deleted != int(m.w.tombs.Load()) {
		t.Fatalf("Inspect = %+v; want Stats %+v, %d slots, %d deleted", st, stats, m.w.g.slots(), m.w.tombs.Load())
	}
	if st.Stats.Entries != len(want) {
		t.Fatalf("Inspect = %+v, want %d entries", st, len(want))
	}
	if h := st.Holders(); len(h) != 1 || h[0].State != "alive" {
		t.Fatalf("Inspect beside a stalled writer: lock %v, holders %v; want one alive", st.Writer, h)
	}
	p.Kill()
	st = inspectMap(t, m.Segment().Name())
	if h := st.Holders(); len(h) != 1 || h[0].State != "dead" || st.Stats.Deaths != 0 {
		t.Fatalf("Inspect after the writer was killed: lock %v, deaths %d; want its holder dead, no death counted", st.Writer, st.Stats.Deaths)
	}
	if _, err := m.Delete(t.Context(), []byte("k1")); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("Delete after the writer died = %v, want ErrOwnerDead", err)
	}
	delete(want, "k1")
	st = inspectMap(t, m.Segment().Name())
	if st.Writer.Holder != nil || st.Stats.Deaths != 1 || st.Deleted != int(m.w.tombs.Load()) ||
		st.Stats.Entries != len(want) || st.Stats.UsedBytes != usedBytes(want) {
		t.Fatalf("Inspect after a repair and a delete = %+v", st)
	}
	if c := st.Counters(); c["Deaths"] != 1 {
		t.Fatalf("Counters = %v", c)
	}
}

// TestInspectCorrupt gives the inspector what cannot be a map: an error
// wrapping ErrCorrupt, never a panic.
func TestInspectCorrupt(t *testing.T) {
	good, _ := goodImage(t)
	for _, img := range [][]byte{nil, good[:ctlSize], good[:len(good)-16], append([]byte{1}, good[1:]...)} {
		if _, err := Inspect(img); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Inspect of %d bytes that hold no map = %v, want ErrCorrupt", len(img), err)
		}
	}
	if _, err := Inspect(good); err != nil {
		t.Fatalf("Inspect of a good map = %v", err)
	}
}
