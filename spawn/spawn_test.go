//go:build linux

package spawn_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
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

// overlapArg is addOverlap's argument: V is the shared counter; Sync's
// words are the start barrier (0), each child's count of close overlaps
// (1+ID) and of its own adds (3+ID).
type overlapArg struct {
	V        *shm.Int64
	Sync     *shm.Int64Array
	ID       int
	Min      int64 // adds at least
	Overlaps int64 // close overlaps each child must see
	Step     int64
}

// closeGap is the most foreign adds between two of a child's own that
// still count as a close overlap: both children were running at that
// moment, not taking turns on one CPU (a turn lasts thousands of adds).
const closeGap = 64

// addOverlap meets the other child at a barrier in shared memory, then
// adds Step to V at least Min times, and on until both children have seen
// Overlaps close overlaps (so they did add at the same moments, however
// loaded the machine), and records its counts in Sync.
var addOverlap = spawn.Register("add-overlap", func(ctx context.Context, a overlapArg) error {
	defer a.V.Close()
	defer a.Sync.Close()
	a.Sync.Add(0, 1)
	for a.Sync.Load(0) < 2 {
		runtime.Gosched()
	}
	deadline := time.Now().Add(time.Minute)
	prev := a.V.Add(a.Step)
	n, near := int64(1), int64(0)
	for n < a.Min || a.Sync.Load(1) < a.Overlaps || a.Sync.Load(2) < a.Overlaps {
		// A tight loop: nothing but the add and its check between the
		// load and the store of a non-atomic Add.
		for range 1024 {
			v := a.V.Add(a.Step)
			if d := (v-prev)/a.Step - 1; d >= 1 && d <= closeGap {
				near++
			}
			prev = v
		}
		n += 1024
		a.Sync.Store(1+a.ID, near)
		if time.Now().After(deadline) {
			a.Sync.Store(3+a.ID, n)
			return fmt.Errorf("child %d: %d adds in a minute, %d close overlaps", a.ID, n, near)
		}
	}
	a.Sync.Store(3+a.ID, n)
	return nil
})

// TestSharedInt64: two children add to one shm.Int64 at once, and no add
// is lost. They meet at a barrier in shared memory first, and each adds
// until both have seen the other's adds land close between two of their
// own 1,000 times, so they did run at once; a non-atomic Add loses adds
// there.
func TestSharedInt64(t *testing.T) {
	v, err := shm.NewInt64()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	words, err := shm.NewArray[int64](5)
	if err != nil {
		t.Fatal(err)
	}
	defer words.Close()
	v.Store(5)
	const step, overlaps = 3, 1000
	ps := make([]*spawn.Process, 2)
	for id := range ps {
		arg := overlapArg{V: v, Sync: words, ID: id, Min: 200_000, Overlaps: overlaps, Step: step}
		if ps[id], err = spawn.Start(t.Context(), addOverlap, arg, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(ps[0].Wait(), ps[1].Wait()); err != nil {
		t.Fatal(err)
	}
	seen0, seen1, n0, n1 := words.Load(1), words.Load(2), words.Load(3), words.Load(4)
	t.Logf("child 0: %d adds, %d close overlaps; child 1: %d adds, %d close overlaps", n0, seen0, n1, seen1)
	if seen0 < overlaps || seen1 < overlaps {
		t.Fatalf("the children's adds overlapped too little (close overlaps: %d, %d; want %d each)", seen0, seen1, overlaps)
	}
	if want := 5 + step*(n0+n1); v.Load() != want {
		t.Fatalf("Int64 = %d after two children added %d and %d times %d to 5, want %d (%d adds lost)",
			v.Load(), n0, n1, step, want, (want-v.Load())/step)
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
