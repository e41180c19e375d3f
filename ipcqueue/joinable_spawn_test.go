//go:build linux

package ipcqueue_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/spawn"
)

// spawn imports ipcqueue, so only this external test package may import
// spawn, and the package's TestMain (package ipcqueue) cannot call
// spawn.Main. This init does: package variables (the registrations below)
// are set before it runs, and in a spawn child it runs the function and
// exits; in the test process it returns at once.
func init() { spawn.Main() }

type consumeArg struct {
	J   *ipcqueue.JoinableQueue
	Get int
}

// consumeAndDie gets Get messages and is SIGKILLed, by itself, before any
// TaskDone: for real, at exactly that step.
var consumeAndDie = spawn.Register("ipcqueue.consumeAndDie", func(ctx context.Context, a consumeArg) error {
	for range a.Get {
		if _, err := a.J.Get(ctx); err != nil {
			return err
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
})

// TestJoinSpawnConsumerKilled: a spawn child that got its joinable queue
// in its argument takes 2 of 5 messages and is SIGKILLed before TaskDone;
// the parent's Join, already waiting, returns a LostError naming 2
// messages and the child's pid, and once the other 3 are done, Join
// returns nil.
func TestJoinSpawnConsumerKilled(t *testing.T) {
	ctx := t.Context()
	j, err := ipcqueue.NewJoinable(4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := range 5 {
		if err := j.Put(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	joined := make(chan error, 1)
	go func() { joined <- j.Join(ctx) }()
	p, err := spawn.Start(ctx, consumeAndDie, consumeArg{J: j, Get: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := p.Wait(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child's Wait = %v, want killed by SIGKILL", err)
	}
	err = <-joined // ctx bounds it: only a hang misses
	var lost *ipcqueue.LostError
	if !errors.As(err, &lost) || !errors.Is(err, ipcqueue.ErrTasksLost) || lost.Lost != 2 || lost.Pid != p.Pid || lost.Procs != 1 {
		t.Fatalf("Join after the child's SIGKILL = %v, want 2 messages lost with pid %d", err, p.Pid)
	}
	for range 3 {
		if _, err := j.Get(ctx); err != nil {
			t.Fatal(err)
		}
		if err := j.TaskDone(); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Join(ctx); err != nil {
		t.Fatalf("Join once the rest were done = %v", err)
	}
}
