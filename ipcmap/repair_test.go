//go:build linux

package ipcmap

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
)

// crashAt runs the crash case named op on the named map in a helper
// process that is killed with SIGKILL at step s.
func crashAt(t *testing.T, name, op string, s step) {
	t.Helper()
	cmd := helperproc.Command(t, "crashwrite", name, op, strconv.Itoa(int(s)))
	helperproc.NoExitSleep(cmd)
	out, err := cmd.Output()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("writer did not die at step %v: %v, output %q", s, err, out)
	}
}

// pausedGet starts r.Get(key) in a goroutine and returns once the read
// has loaded the seq and word of key's slot and stopped there; release
// lets it go on, and its result then arrives on the channel.
func pausedGet(t *testing.T, r *Map, key string) (release func(), result <-chan string) {
	in, out := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.w.readFault = func() { once.Do(func() { close(in); <-out }) }
	res := make(chan string, 1)
	go func() {
		v, ok, err := r.Get([]byte(key))
		res <- fmt.Sprintf("%q, %v, %v", v, ok, err)
	}()
	select {
	case <-in:
	case <-time.After(10 * time.Second):
		t.Fatal("the read never reached the slot")
	}
	return func() { close(out) }, res
}

// TestRepairRetiresReads: a reader is inside k1's old record when a
// writer replacing it dies between its publish and its increment of the
// slot's seq. The repair frees the old record, and the next writes reuse
// its chunks: the reader must still see k1 whole (the old value or the new
// one), so the repair must retire every read in progress as the dead
// writer's seq increment would have.
func TestRepairRetiresReads(t *testing.T) {
	m, name := namedMap(t, &Options{Entries: 512, Bytes: 4096})
	fillMap(t, m, prefill())
	r, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	release, result := pausedGet(t, r, "k1")
	c := crashCase("set-update")
	crashAt(t, name, c.name, stepPublished)
	// Fill every free chunk, the old record's among them, with one-chunk
	// records.
	for i := 0; ; i++ {
		err := m.Set(t.Context(), fmt.Appendf(nil, "f%d", i), nil)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil && !(i == 0 && errors.Is(err, ErrOwnerDead)) {
			t.Fatalf("Set %d after the death = %v", i, err)
		}
	}
	release()
	got := <-result
	if old, new := fmt.Sprintf("%q, true, <nil>", prefill()["k1"]), fmt.Sprintf("%q, true, <nil>", c.val); got != old && got != new {
		t.Fatalf("Get(k1) across a repair that freed its record = %s; want %s or %s", got, old, new)
	}
}

// fillOneChunk sets keys f0, f1, ... with empty values (one chunk each)
// until the map is full, and returns the first error that is not ErrFull
// (the first Set's, which repairs after a death, is the one a test looks
// at).
func fillOneChunk(t *testing.T, m *Map) (first error) {
	t.Helper()
	for i := 0; ; i++ {
		err := m.Set(t.Context(), fmt.Appendf(nil, "f%d", i), nil)
		if i == 0 {
			first = err
		} else if err != nil && !errors.Is(err, ErrFull) {
			t.Fatalf("Set %d = %v", i, err)
		}
		if errors.Is(err, ErrFull) {
			return first
		}
	}
}

// TestFailedRepairKeepsIntact: a writer dies, and the repair after it
// finds a corrupt slot (its word points past the data area) before the
// other entries' slots. The repair fails with ErrCorrupt, but must still
// mark every intact record in use: the writes that follow (which wrap
// round the data area, past freed holes, to its start) must not take
// their bytes, and every intact entry keeps its value.
func TestFailedRepairKeepsIntact(t *testing.T) {
	m, name := namedMap(t, &Options{Entries: 512, Bytes: 4096})
	want := prefill()
	fillMap(t, m, want)
	holes := map[string]string{}
	for i := range 10 {
		holes[fmt.Sprint("hole", i)] = "bytes freed again"
	}
	fillMap(t, m, holes)
	for k := range holes {
		if _, err := m.Delete(t.Context(), []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	s := uint64(0)
	for m.w.slots[s].word.Load() <= wordDeleted {
		s++
	}
	key, _, _, err := m.w.readSlot(s)
	if err != nil {
		t.Fatal(err)
	}
	delete(want, string(key))
	m.w.slots[s].word.Store(liveWord(m.w.g.chunks+5, tagOf(m.w.slots[s].word.Load())))
	crashAt(t, name, "set-insert", stepAllocated)
	if err := fillOneChunk(t, m); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Set after a death, with a corrupt slot = %v, want ErrCorrupt", err)
	}
	for k, v := range want {
		if got, ok, err := m.Get([]byte(k)); err != nil || !ok || string(got) != v {
			t.Errorf("Get(%q) after a failed repair and writes = %q, %v, %v; want %q", k, got, ok, err, v)
		}
	}
}

// TestRepairKilled: a writer dies inside a write (its record allocated,
// not published), and the writer that repairs after it is killed in the
// middle of the repair (the bitmap cleared and partly rebuilt). The next
// writer repairs again, from the slot words alone: the map is exact, and
// both deaths are counted.
func TestRepairKilled(t *testing.T) {
	m, name := namedMap(t, &Options{Entries: 64, Bytes: 4096})
	want := prefill()
	fillMap(t, m, want)
	crashAt(t, name, "set-insert", stepAllocated)
	crashAt(t, name, "repair", stepRepairing)
	for k, v := range want {
		if got, ok, err := m.Get([]byte(k)); err != nil || !ok || string(got) != v {
			t.Fatalf("Get(%q) after a repair was killed = %q, %v, %v; want %q", k, got, ok, err, v)
		}
	}
	if err := m.Set(t.Context(), []byte("next"), []byte("writer")); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("Set after a repairing writer died = %v, want ErrOwnerDead", err)
	}
	want["next"] = "writer"
	checkState(t, m, want)
	if st, _ := m.Stats(); st.Deaths != 2 {
		t.Fatalf("Stats.Deaths = %d, want 2", st.Deaths)
	}
}
