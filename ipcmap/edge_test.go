//go:build linux

package ipcmap

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/ipckit/ipckit/shm"
)

// TestCancelWhileWaiting cancels a writer's context while it sleeps on
// the lock that a stalled live writer holds: the write returns
// context.Canceled promptly, and changes nothing.
func TestCancelWhileWaiting(t *testing.T) {
	m, want, p := stalled(t, "stallwrite", "stalled")
	defer p.Kill()
	before, _ := m.Stats()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Set(ctx, []byte("k2"), []byte("never")) }()
	for m.w.lock.Sleepers().Load() == 0 { // the writer sleeps on the lock
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Set cancelled while it waited = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled Set went on waiting for the lock")
	}
	if after, _ := m.Stats(); after != before {
		t.Fatalf("Stats after a cancelled Set = %+v, before %+v", after, before)
	}
	for k, v := range want {
		if got, ok, err := m.Get([]byte(k)); err != nil || !ok || string(got) != v {
			t.Fatalf("Get(%q) after a cancelled Set = %q, %v, %v; want %q", k, got, ok, err, v)
		}
	}
}

// TestOpenTruncated opens a named map whose file is shorter than its
// header says, by a little and by a lot: a clear error, no fault.
func TestOpenTruncated(t *testing.T) {
	for _, cut := range []int64{16, 1 << 16} {
		m, name := namedMap(t, &Options{Entries: 64, Bytes: 1 << 17})
		fillMap(t, m, prefill())
		fi, err := os.Stat(shm.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(shm.Path(name), fi.Size()-cut); err != nil {
			t.Fatal(err)
		}
		m2, err := Open(name)
		if err == nil {
			m2.Close()
			t.Fatalf("Open of a map cut short by %d bytes succeeded", cut)
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, shm.ErrSize) {
			t.Fatalf("Open of a map cut short by %d bytes = %v, want ErrCorrupt or shm.ErrSize", cut, err)
		}
	}
}

// TestGetAllocations: AppendValue into a buffer with room allocates
// nothing, hit or miss, and Get allocates only the value it returns.
func TestGetAllocations(t *testing.T) {
	m, _ := namedMap(t, &Options{Entries: 64, Bytes: 8192})
	fillMap(t, m, prefill())
	buf := make([]byte, 0, 64)
	for _, c := range []struct {
		name string
		want float64
		f    func()
	}{
		{"AppendValue hit", 0, func() { m.AppendValue(buf[:0], []byte("k1")) }},
		{"AppendValue miss", 0, func() { m.AppendValue(buf[:0], []byte("absent")) }},
		{"Get miss", 0, func() { m.Get([]byte("absent")) }},
		{"Get hit", 1, func() { m.Get([]byte("k1")) }},
	} {
		if n := testing.AllocsPerRun(100, c.f); n != c.want {
			t.Errorf("%s: %v allocations, want %v", c.name, n, c.want)
		}
	}
}
