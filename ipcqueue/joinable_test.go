//go:build linux

package ipcqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
)

func init() {
	// jconsume NAME GET DONE: open the joinable queue, get GET messages,
	// mark DONE of them done, say "got", and wait to be killed.
	helperproc.Register("jconsume", func(a []string) error {
		j, err := OpenJoinable(a[0])
		if err != nil {
			return err
		}
		for range atoi(a[1]) {
			if _, err := j.Get(context.Background()); err != nil {
				return err
			}
		}
		for range atoi(a[2]) {
			if err := j.TaskDone(); err != nil {
				return err
			}
		}
		fmt.Println("got")
		time.Sleep(time.Hour)
		return nil
	})
}

// TestJoin: Join returns once every message put was marked done, by
// consumers on several goroutines, and not before; TaskDone beyond what a
// handle got is ErrTaskDone.
func TestJoin(t *testing.T) {
	ctx := t.Context()
	j, err := NewJoinableHeap(4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Join(ctx); err != nil {
		t.Fatalf("Join of an empty queue = %v", err)
	}
	if err := j.TaskDone(); !errors.Is(err, ErrTaskDone) {
		t.Fatalf("TaskDone with nothing got = %v, want ErrTaskDone", err)
	}
	const n = 300
	var done atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := j.Get(ctx); err != nil {
					return // io.EOF after Shutdown
				}
				done.Add(1)
				if err := j.TaskDone(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := range n {
		if err := j.Put(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	jctx, cancel := context.WithTimeout(ctx, hangAfter)
	defer cancel()
	if err := j.Join(jctx); err != nil {
		t.Fatalf("Join with every message done = %v", err)
	}
	if got := done.Load(); got != n {
		t.Fatalf("Join returned with %d of %d messages done", got, n)
	}
	j.Shutdown()
	wg.Wait()

	// A message got and not done holds Join up until its ctx is done.
	j, err = NewJoinableHeap(4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.Put(ctx, []byte("x"))
	if _, err := j.Get(ctx); err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer tcancel()
	if err := j.Join(tctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Join with a message not done = %v, want DeadlineExceeded", err)
	}
	if j.Unfinished() != 1 {
		t.Fatalf("Unfinished = %d, want 1", j.Unfinished())
	}
}

// TestJoinConsumerKilled: a consumer process that got 3 messages, marked 1
// done and was killed by SIGKILL makes a waiting Join return at once with
// a LostError naming 2 messages and its pid; a later Join waits only for
// the other messages.
func TestJoinConsumerKilled(t *testing.T) {
	ctx := t.Context()
	name := helperproc.Name(t)
	j, err := CreateJoinable(name, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveJoinable(name)
	defer j.Close()
	for i := range 10 {
		if err := j.Put(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	h := helperproc.Start(t, command(t, "jconsume", name, "3", "1"))
	h.Expect(t, "got")
	joined := make(chan error, 1)
	go func() { joined <- j.Join(ctx) }()
	waitFor(t, "Join's sleep", func() bool { return j.doneFx.Load()&1 != 0 })
	h.Kill()
	err = woken(t, joined, "Join")
	var lost *LostError
	if !errors.As(err, &lost) || !errors.Is(err, ErrTasksLost) || lost.Lost != 2 || lost.Pid != h.Cmd.Process.Pid || lost.Procs != 1 {
		t.Fatalf("Join after the consumer's SIGKILL = %v, want 2 messages lost with pid %d", err, h.Cmd.Process.Pid)
	}
	t.Log(err)
	if j.Unfinished() != 7 {
		t.Fatalf("Unfinished = %d, want the 7 messages still in the queue", j.Unfinished())
	}
	for range 7 {
		if _, err := j.Get(ctx); err != nil {
			t.Fatal(err)
		}
		j.TaskDone()
	}
	if err := j.Join(ctx); err != nil {
		t.Fatalf("Join after the rest were done = %v", err)
	}
}

// TestJoinableHandle: a handle decoded from another's encoding (as a spawn
// child gets it) shares the queue and the task counts.
func TestJoinableHandle(t *testing.T) {
	ctx := t.Context()
	name := helperproc.Name(t)
	j, err := CreateJoinable(name, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveJoinable(name)
	defer j.Close()
	b, err := j.GobEncode()
	if err != nil {
		t.Fatal(err)
	}
	k := new(JoinableQueue)
	if err := k.GobDecode(b); err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	j.Put(ctx, []byte("x"))
	if m, err := k.Get(ctx); err != nil || string(m) != "x" {
		t.Fatalf("Get through the decoded handle = %q, %v", m, err)
	}
	if j.Unfinished() != 1 {
		t.Fatalf("Unfinished = %d, want 1", j.Unfinished())
	}
	if err := j.TaskDone(); !errors.Is(err, ErrTaskDone) {
		t.Fatalf("TaskDone on a handle that got nothing = %v, want ErrTaskDone", err)
	}
	if err := k.TaskDone(); err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithTimeout(ctx, hangAfter)
	defer cancel()
	if err := j.Join(jctx); err != nil {
		t.Fatalf("Join = %v", err)
	}
	if err := new(JoinableQueue).GobDecode([]byte("junk")); err == nil {
		t.Fatal("GobDecode of junk succeeded")
	}
}
