//go:build linux

package spawn_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/proc"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

func TestSuccess(t *testing.T) {
	p, err := spawn.Start(t.Context(), nop, struct{}{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid <= 0 || p.Pid == os.Getpid() {
		t.Fatalf("Pid = %d", p.Pid)
	}
	// Wait from several goroutines at once, and again afterwards.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := p.Wait(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Wait")
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if c := p.ExitCode(); c != 0 {
		t.Fatalf("ExitCode = %d", c)
	}
	if err := p.Kill(); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("Kill after exit = %v, want os.ErrProcessDone", err)
	}
}

// TestReaped checks that a child nobody waits for is reaped: no zombie.
func TestReaped(t *testing.T) {
	p, err := spawn.Start(t.Context(), nop, struct{}{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if _, err := os.Stat("/proc/" + strconv.Itoa(p.Pid)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("child %d still in /proc after Done (a zombie?): %v", p.Pid, err)
	}
}

func TestExitCode(t *testing.T) {
	for _, code := range []int{0, 1, 7, 3, 255} {
		p, err := spawn.Start(t.Context(), exitWith, code, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Wait()
		if p.ExitCode() != code {
			t.Errorf("exit %d: ExitCode = %d", code, p.ExitCode())
		}
		if code == 0 {
			if err != nil {
				t.Errorf("exit 0: %v", err)
			}
			continue
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != code {
			t.Errorf("exit %d: Wait = %v, want *exec.ExitError with code %d", code, err, code)
		}
	}
}

func TestSignal(t *testing.T) {
	err := spawn.Run(t.Context(), killSelf, syscall.SIGTERM, nil)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Wait = %v, want *exec.ExitError", err)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("wait status %v, want killed by SIGTERM", ws)
	}

	p, err := spawn.Start(t.Context(), sleep, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A Go program dies of SIGTERM, both before and after its runtime
	// installs its handlers; it would ignore SIGUSR1. (Not SIGHUP: a Go
	// program keeps SIGHUP and SIGINT ignored when it inherits them
	// ignored, as under nohup, and the child would sleep its hour.)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		p.Kill()
		t.Fatal("the child still runs 30 s after SIGTERM")
	}
	if err := p.Wait(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("Wait = %v, want death by SIGTERM", err)
	}
	if p.ExitCode() != -1 {
		t.Fatalf("ExitCode = %d after a signal, want -1", p.ExitCode())
	}
}

func TestReturnedError(t *testing.T) {
	err := spawn.Run(t.Context(), fail, "no such widget: 42", nil)
	var ce *spawn.ChildError
	if !errors.As(err, &ce) {
		t.Fatalf("Wait = %v (%T), want *ChildError", err, err)
	}
	if ce.Msg != "no such widget: 42" || ce.Name != "fail" || ce.Pid <= 0 {
		t.Fatalf("ChildError = %+v", ce)
	}
}

func TestPanic(t *testing.T) {
	err := spawn.Run(t.Context(), boom, "kaboom", nil)
	var pe *spawn.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("Wait = %v (%T), want *PanicError", err, err)
	}
	if pe.Value != "kaboom" {
		t.Errorf("Value = %q", pe.Value)
	}
	if !strings.Contains(pe.Stack, "spawn_test.init.func") || !strings.Contains(pe.Stack, "panic") {
		t.Errorf("Stack does not show the panicking function:\n%s", pe.Stack)
	}
}

func TestGoexit(t *testing.T) {
	err := spawn.Run(t.Context(), goexit, struct{}{}, nil)
	var ce *spawn.ChildError
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "Goexit") {
		t.Fatalf("Wait = %v, want a *ChildError about Goexit", err)
	}
}

func TestSharedInt64(t *testing.T) {
	v, err := shm.NewInt64()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	v.Store(5)
	arg := addArg{V: v, N: 1000, Step: 3, Inner: &inner{Tag: "nested", List: []int{1, 2, 3}}}
	// Two children at once, adding to the same memory.
	p1, err := spawn.Start(t.Context(), add, arg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := spawn.Start(t.Context(), add, arg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(p1.Wait(), p2.Wait()); err != nil {
		t.Fatal(err)
	}
	if got := v.Load(); got != 5+2*3000 {
		t.Fatalf("Int64 = %d after two children added 3000 each to 5", got)
	}
}

func TestBigArgument(t *testing.T) {
	data := make([]byte, bigSize)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	if err := spawn.Run(t.Context(), big, bigArg{Data: data, Sum: sha256.Sum256(data)}, nil); err != nil {
		t.Fatal(err)
	}
	// And a corrupted one is noticed, so the check above means something.
	sum := sha256.Sum256(data)
	sum[0] ^= 1
	var ce *spawn.ChildError
	if err := spawn.Run(t.Context(), big, bigArg{Data: data, Sum: sum}, nil); !errors.As(err, &ce) {
		t.Fatalf("Wait = %v, want a checksum ChildError", err)
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	p, err := spawn.Start(ctx, sleep, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		p.Kill()
		t.Fatal("child still running 5s after its ctx was cancelled")
	}
	err = p.Wait()
	var ee *exec.ExitError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &ee) {
		t.Fatalf("Wait = %v, want context.Canceled and *exec.ExitError", err)
	}
	if ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child died of %v", ee)
	}

	// A ctx already done starts nothing.
	if _, err := spawn.Start(ctx, nop, struct{}{}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled ctx = %v", err)
	}
	// A ctx cancelled after a successful child leaves its result alone.
	ctx2, cancel2 := context.WithCancel(t.Context())
	p, err = spawn.Start(ctx2, nop, struct{}{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	cancel2()
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestOptions(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := t.TempDir()
	err := spawn.Run(t.Context(), report, "SPAWN_TEST_KEY",
		&spawn.Options{Stdout: &out, Stderr: &errOut, Dir: dir, Env: append(os.Environ(), "SPAWN_TEST_KEY=hello")})
	if err != nil {
		t.Fatal(err)
	}
	want := "dir=" + dir + " SPAWN_TEST_KEY=hello spawnvar=false\n"
	if out.String() != want {
		t.Errorf("stdout = %q, want %q", out.String(), want)
	}
	if errOut.String() != "to stderr\n" {
		t.Errorf("stderr = %q", errOut.String())
	}

	// An empty, non-nil Env is none; io.Discard is the null device; the
	// working directory is the parent's by default.
	out.Reset()
	t.Setenv("SPAWN_TEST_KEY", "inherited")
	if err := spawn.Run(t.Context(), report, "SPAWN_TEST_KEY", &spawn.Options{Stdout: &out, Stderr: io.Discard, Env: []string{}}); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if want := "dir=" + wd + " SPAWN_TEST_KEY= spawnvar=false\n"; out.String() != want {
		t.Errorf("stdout with an empty Env = %q, want %q", out.String(), want)
	}
	out.Reset()
	if err := spawn.Run(t.Context(), report, "SPAWN_TEST_KEY", &spawn.Options{Stdout: &out, Stderr: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if want := "dir=" + wd + " SPAWN_TEST_KEY=inherited spawnvar=false\n"; out.String() != want {
		t.Errorf("stdout with a nil Env = %q, want %q", out.String(), want)
	}
}

func TestGrandchild(t *testing.T) {
	err := spawn.Run(t.Context(), nested, "from the grandchild", nil)
	var ce *spawn.ChildError
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "from the grandchild") {
		t.Fatalf("Wait = %v", err)
	}
	if ce.Name != "nested" {
		t.Fatalf("outer error names %q", ce.Name)
	}
}

// TestParentKilled kills, with SIGKILL, a helper that started a child from a
// thread that has since exited, and checks that the child dies within 1 s.
func TestParentKilled(t *testing.T) {
	h := helperproc.Start(t, helperproc.Command(t, "parent"))
	cmd := h.Cmd
	pid, err := strconv.Atoi(strings.TrimSpace(h.Line(t)))
	if err != nil {
		t.Fatal(err)
	}
	child, err := proc.Lookup(pid)
	if err != nil {
		t.Fatalf("grandchild %d is gone before its parent was killed: %v", pid, err)
	}
	t.Cleanup(func() {
		if proc.Alive(child) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(time.Second)
	for proc.Alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still alive 1s after its parent was killed", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestNoLeakedDescriptors(t *testing.T) {
	v, err := shm.NewInt64()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	arg := addArg{V: v, N: 1, Step: 1, Inner: &inner{Tag: "nested", List: []int{1, 2, 3}}}
	// One round first, so lazily opened descriptors (/dev/null) are counted.
	if err := spawn.Run(t.Context(), add, arg, nil); err != nil {
		t.Fatal(err)
	}
	before := countFDs(t)
	for range 100 {
		p, err := spawn.Start(t.Context(), add, arg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if after := countFDs(t); after != before {
		t.Fatalf("open descriptors: %d before 100 Start/Wait cycles, %d after", before, after)
	}
	if v.Load() != 101 {
		t.Fatalf("counter = %d, want 101", v.Load())
	}
}
