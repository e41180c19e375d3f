//go:build linux

package ipcmap

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
)

// fillMap puts want into m.
func fillMap(t testing.TB, m *Map, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if err := m.Set(t.Context(), []byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCrashAtEveryStep kills a writer process with SIGKILL at every step
// of every write (see "Writing"). Readers then see the old value before
// the commit point and the new one from it on, never a mix, without any
// repair; the next writer repairs the map, is told (ErrOwnerDead), and
// the map is then exact: entries, count, bytes in use and bitmap.
func TestCrashAtEveryStep(t *testing.T) {
	for _, c := range crashOps {
		for _, s := range c.steps {
			t.Run(fmt.Sprint(c.name, "/", s), func(t *testing.T) {
				opts := c.opts
				if opts == nil {
					opts = &Options{Entries: 64, Bytes: 4096}
				}
				m, name := namedMap(t, opts)
				old := prefill()
				if c.fill == nil {
					fillMap(t, m, old)
				} else {
					var err error
					if old, err = c.fill(t.Context(), m); err != nil {
						t.Fatal(err)
					}
				}
				cmd := helperproc.Command(t, "crashwrite", name, c.name, strconv.Itoa(int(s)))
				helperproc.NoExitSleep(cmd)
				out, err := cmd.Output()
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("writer did not die at step %v: %v, output %q", s, err, out)
				}
				want := maps.Clone(old)
				if s >= stepPublished {
					if c.op == opDelete {
						delete(want, c.key)
					} else {
						want[c.key] = c.val
					}
				}
				// Readers first, before any repair.
				for k, v := range want {
					if got, ok, err := m.Get([]byte(k)); err != nil || !ok || string(got) != v {
						t.Fatalf("before repair: Get(%q) = %q, %v, %v; want %q", k, got, ok, err, v)
					}
				}
				if got := contents(m); !maps.Equal(got, want) {
					t.Fatalf("before repair: Range = %v, want %v", got, want)
				}
				// The next writer repairs and learns of the death.
				err = m.Set(t.Context(), []byte("next"), []byte("writer"))
				if !errors.Is(err, ErrOwnerDead) {
					t.Fatalf("next Set after a writer died at %v = %v, want ErrOwnerDead", s, err)
				}
				want["next"] = "writer"
				checkState(t, m, want)
				if st, _ := m.Stats(); st.Deaths != 1 {
					t.Fatalf("Stats.Deaths = %d, want 1", st.Deaths)
				}
				if err := m.Set(t.Context(), []byte("after"), []byte("repair")); err != nil {
					t.Fatalf("Set after the repair = %v, want nil", err)
				}
				want["after"] = "repair"
				checkState(t, m, want)
			})
		}
	}
}

// stalled returns a prefilled named map and a helper process that is
// stopped inside a call on it: helper says line once it is there.
func stalled(t *testing.T, helper, line string) (*Map, map[string]string, *helperproc.Proc) {
	m, name := namedMap(t, &Options{Entries: 64, Bytes: 4096})
	want := prefill()
	fillMap(t, m, want)
	p := helperproc.Start(t, helperproc.Command(t, helper, name))
	p.Expect(t, line)
	return m, want, p
}

// TestStalledWriter stops a live writer inside Set, holding the lock:
// readers go on (they take no lock), a writer with a deadline gets
// DeadlineExceeded (a live holder is never robbed), and once the stalled
// writer is killed the next writer takes over at once.
func TestStalledWriter(t *testing.T) {
	m, want, p := stalled(t, "stallwrite", "stalled")
	reads := make(chan error, 1)
	go func() {
		for range 1000 {
			if got, ok, err := m.Get([]byte("k1")); err != nil || !ok || string(got) != want["k1"] {
				reads <- fmt.Errorf("Get(k1) beside a stalled writer = %q, %v, %v", got, ok, err)
				return
			}
		}
		reads <- nil
	}()
	select {
	case err := <-reads:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("1000 Gets beside a writer stalled holding the lock did not end in 10 s: readers wait for writers")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := m.Set(ctx, []byte("k1"), []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set beside a live writer holding the lock = %v, want DeadlineExceeded", err)
	}
	p.Kill()
	if err := m.Set(t.Context(), []byte("k1"), []byte("x")); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("Set after the holder was killed = %v, want ErrOwnerDead", err)
	}
	want["k1"] = "x"
	checkState(t, m, want)
}

// TestDeadReader stops a reader process inside Get, then lets writers
// replace and delete the very entry it reads, and kills it: nothing waits
// for it, and its death changes nothing (no repair, no ErrOwnerDead).
func TestDeadReader(t *testing.T) {
	m, want, p := stalled(t, "stallread", "reading")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // only a hang misses it
	defer cancel()
	for i := range 100 {
		v := fmt.Sprint("value ", i)
		if err := m.Set(ctx, []byte("k1"), []byte(v)); err != nil {
			t.Fatalf("Set(k1) beside a stalled reader = %v", err)
		}
		want["k1"] = v
	}
	if _, err := m.Delete(t.Context(), []byte("k1")); err != nil {
		t.Fatal(err)
	}
	delete(want, "k1")
	p.Kill()
	if err := m.Set(t.Context(), []byte("k9"), []byte("v")); err != nil {
		t.Fatalf("Set after a reader died = %v, want nil", err)
	}
	want["k9"] = "v"
	checkState(t, m, want)
	if st, _ := m.Stats(); st.Deaths != 0 {
		t.Fatalf("Stats.Deaths = %d after a reader died, want 0", st.Deaths)
	}
}

// TestCloseWakesWriter closes a handle whose writer waits for the lock
// that a stalled process holds: the writer returns os.ErrClosed at once,
// and the map is unchanged.
func TestCloseWakesWriter(t *testing.T) {
	m, want, p := stalled(t, "stallwrite", "stalled")
	defer p.Kill()
	m2, err := Open(m.Segment().Name())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m2.Set(context.Background(), []byte("k1"), []byte("x")) }()
	for m2.w.lock.Sleepers().Load() == 0 { // the writer sleeps on the lock
		time.Sleep(time.Millisecond)
	}
	m2.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Set on a handle closed while it waited = %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake a writer waiting for the lock")
	}
	for k, v := range want {
		if got, _, _ := m.Get([]byte(k)); string(got) != v {
			t.Fatalf("Get(%q) = %q, want %q", k, got, v)
		}
	}
}
