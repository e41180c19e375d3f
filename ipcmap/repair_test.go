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

