//go:build linux

package ipcqueue

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
)

// InspectTasks reads the unfinished count and each consumer's messages
// taken and not done, with its pid and liveness: alive, then dead after a
// SIGKILL, and still counted (an inspector writes nothing off), and it
// changes none of the bytes.
func TestInspectTasks(t *testing.T) {
	ctx := t.Context()
	name := helperproc.Name(t)
	j, err := CreateJoinable(name, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveJoinable(name)
	defer j.Close()
	for i := range 5 {
		if err := j.Put(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	h := helperproc.Start(t, command(t, "jconsume", name, "3", "1"))
	h.Expect(t, "got")
	pid := h.Cmd.Process.Pid
	check := func(state string) {
		t.Helper()
		mem := j.seg.Bytes()
		before := bytes.Clone(mem)
		st, err := InspectTasks(mem)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, mem) {
			t.Fatal("InspectTasks changed the task counts")
		}
		if st.Unfinished != 4 || st.Lost != 0 || len(st.Consumers) != 1 {
			t.Fatalf("InspectTasks: %+v, want 4 unfinished and one consumer", st)
		}
		c := st.Consumers[0]
		if c.Taken != 2 || c.Holder.Pid != pid || c.Holder.State != state || c.Reaping {
			t.Fatalf("consumer: %+v, want pid %d %s with 2 taken", c, pid, state)
		}
		if hs := st.Holders(); len(hs) != 1 || hs[0] != c.Holder {
			t.Fatalf("Holders: %v", hs)
		}
	}
	check("alive")
	h.Kill()
	check("dead")
	if err := j.Join(ctx); !errors.Is(err, ErrTasksLost) {
		t.Fatalf("Join = %v, want ErrTasksLost", err)
	}
	st, err := InspectTasks(j.seg.Bytes())
	if err != nil || st.Lost != 2 || st.LostProcs != 1 || st.LastLost != pid || st.Unfinished != 2 || len(st.Consumers) != 0 {
		t.Fatalf("after Join wrote the consumer off: %+v, %v", st, err)
	}
	if c := st.Counters(); c["Lost"] != 2 || c["LostProcs"] != 1 {
		t.Fatalf("Counters: %v", c)
	}
	seg, err := shm.KindTasks.NewHeap(tasksSize)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	if _, err := InspectTasks(seg.Bytes()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("InspectTasks of zeroed memory = %v, want ErrCorrupt", err)
	}
}
