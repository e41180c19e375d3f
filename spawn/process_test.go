//go:build linux

package spawn_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// whoArg asks whoami to check the identity it sees.
type whoArg struct {
	Want string // the name CurrentProcess must report
	Nest bool   // also start a child with the default name and check it
}

// termArg is the argument of the functions that wait for SIGTERM.
type termArg struct {
	Ready *shm.Int64 // set to 1 once the function runs (its ctx watches SIGTERM)
	Clean bool       // return nil after the cancellation, not ctx's error
	Kid   *shm.Int64 // parentTerm: its grandchild's Ready
}

// chanArg cannot cross: gob would drop Done silently.
type chanArg struct {
	N    int
	Done chan struct{}
}

var (
	whoLeaf = spawn.Register("wholeaf", func(ctx context.Context, a whoArg) error { return checkWho(a) })

	whoami = spawn.Register("whoami", func(ctx context.Context, a whoArg) error {
		if err := checkWho(a); err != nil || !a.Nest {
			return err
		}
		// A child's children count on from its identity, as in Python.
		want := spawn.CurrentProcess().Name + ":1"
		p, err := spawn.Start(ctx, whoLeaf, whoArg{Want: want}, nil)
		if err != nil {
			return err
		}
		if p.Name() != want {
			return fmt.Errorf("grandchild named %q, want %q", p.Name(), want)
		}
		return p.Wait()
	})

	waitTerm = spawn.Register("waitterm", func(ctx context.Context, a termArg) error {
		defer a.Ready.Close()
		a.Ready.Store(1)
		<-ctx.Done()
		if !errors.Is(context.Cause(ctx), spawn.ErrTerminated) {
			return fmt.Errorf("ctx ended with cause %v, want ErrTerminated", context.Cause(ctx))
		}
		if a.Clean {
			return nil
		}
		return fmt.Errorf("stopping: %w", ctx.Err())
	})

	chanFunc = spawn.Register("withchan", func(ctx context.Context, a chanArg) error { return nil })

	// ignoreTerm sets Ready to 1, waits for its ctx's end, sets Ready to
	// 2, and then ignores it: only the grace's end or a second SIGTERM
	// ends it.
	ignoreTerm = spawn.Register("ignoreterm", func(ctx context.Context, a termArg) error {
		a.Ready.Store(1)
		<-ctx.Done()
		a.Ready.Store(2)
		time.Sleep(time.Hour)
		return nil
	})

	// parentTerm starts a grandchild (ignoreTerm on Kid), waits for it
	// to run, stores its pid in Ready, and returns ctx's error once
	// SIGTERM cancels ctx.
	parentTerm = spawn.Register("parentterm", func(ctx context.Context, a termArg) error {
		p, err := spawn.Start(context.Background(), ignoreTerm, termArg{Ready: a.Kid}, nil)
		if err != nil {
			return err
		}
		for a.Kid.Load() != 1 {
			select {
			case <-p.Done():
				return fmt.Errorf("the grandchild ended: %w", p.Wait())
			case <-time.After(time.Millisecond):
			}
		}
		a.Ready.Store(int64(p.Pid))
		<-ctx.Done()
		return ctx.Err()
	})
)

// waitValue waits (seconds at most) for v to become want.
func waitValue(t *testing.T, v *shm.Int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for v.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("value %d after 30 s, want %d", v.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitSIGTERM waits (seconds at most) for p to end, and checks that it
// died of SIGTERM.
func waitSIGTERM(t *testing.T, p *spawn.Process) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := p.WaitContext(ctx)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("Wait = %v, want death by SIGTERM", err)
	}
}

// pidRunning reports whether pid names a process that is not a zombie.
func pidRunning(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// TestTerminateIgnored: a function that ignores its cancelled ctx dies of
// SIGTERM once TermGrace has passed, or at a second SIGTERM when the grace
// has no limit; a child that dies of SIGTERM takes its own spawn children
// with it.
func TestTerminateIgnored(t *testing.T) {
	for _, how := range []string{"grace", "twice", "grandchild"} {
		t.Run(how, func(t *testing.T) {
			ready, err := shm.NewInt64()
			if err != nil {
				t.Fatal(err)
			}
			defer ready.Close()
			fn, opts := ignoreTerm, &spawn.Options{TermGrace: 50 * time.Millisecond}
			switch how {
			case "twice":
				opts.TermGrace = -1
			case "grandchild":
				fn = parentTerm
			}
			kid, err := shm.NewInt64()
			if err != nil {
				t.Fatal(err)
			}
			defer kid.Close()
			p, err := spawn.Start(t.Context(), fn, termArg{Ready: ready, Kid: kid}, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			if how == "grandchild" {
				deadline := time.Now().Add(30 * time.Second)
				for ready.Load() == 0 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				kpid := int(ready.Load())
				if kpid == 0 || !pidRunning(kpid) {
					t.Fatalf("grandchild pid %d, not running", kpid)
				}
				defer syscall.Kill(kpid, syscall.SIGKILL)
				if err := p.Terminate(); err != nil {
					t.Fatal(err)
				}
				waitSIGTERM(t, p)
				for pidRunning(kpid) {
					if time.Now().After(deadline) {
						t.Fatalf("grandchild %d still runs 30 s after its parent died of SIGTERM", kpid)
					}
					time.Sleep(time.Millisecond)
				}
				return
			}
			waitValue(t, ready, 1)
			if err := p.Terminate(); err != nil {
				t.Fatal(err)
			}
			waitValue(t, ready, 2) // ctx cancelled
			if how == "twice" {
				if err := p.Terminate(); err != nil && !errors.Is(err, os.ErrProcessDone) {
					t.Fatal(err)
				}
			}
			waitSIGTERM(t, p)
		})
	}
}

func checkWho(a whoArg) error {
	me := spawn.CurrentProcess()
	if me.Name != a.Want || me.Pid != os.Getpid() || me.ParentPid != os.Getppid() {
		return fmt.Errorf("CurrentProcess() = %+v, want name %q, pid %d, parent %d", me, a.Want, os.Getpid(), os.Getppid())
	}
	return nil
}

// waitSet waits (seconds at most) for v to become 1.
func waitSet(t *testing.T, v *shm.Int64, p *spawn.Process) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for v.Load() != 1 {
		select {
		case <-p.Done():
			t.Fatalf("the child exited before it was ready: %v", p.Wait())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the child was not ready after 30 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestProcessName(t *testing.T) {
	if got := spawn.CurrentProcess(); got.Name != "MainProcess" || got.Pid != os.Getpid() || got.ParentPid != 0 {
		t.Fatalf("CurrentProcess() in the parent = %+v", got)
	}
	// The default name: Process-N, N counting from 1, one more per child.
	p, err := spawn.Start(t.Context(), sleep, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	p.Wait()
	m := regexp.MustCompile(`^Process-([0-9]+)$`).FindStringSubmatch(p.Name())
	if m == nil {
		t.Fatalf("default name %q, want Process-N", p.Name())
	}
	var n int
	fmt.Sscan(m[1], &n)
	next := fmt.Sprintf("Process-%d", n+1)
	if err := spawn.Run(t.Context(), whoami, whoArg{Want: next, Nest: true}, nil); err != nil {
		t.Fatalf("child expecting %q: %v", next, err)
	}
	// A name set in Options, seen by the child.
	q, err := spawn.Start(t.Context(), whoami, whoArg{Want: "digest worker"}, &spawn.Options{Name: "digest worker"})
	if err != nil {
		t.Fatal(err)
	}
	if q.Name() != "digest worker" {
		t.Fatalf("Name() = %q", q.Name())
	}
	if err := q.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestTerminate(t *testing.T) {
	for _, clean := range []bool{false, true} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			ready, err := shm.NewInt64()
			if err != nil {
				t.Fatal(err)
			}
			defer ready.Close()
			p, err := spawn.Start(t.Context(), waitTerm, termArg{Ready: ready, Clean: clean}, &spawn.Options{TermGrace: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			waitSet(t, ready, p)
			if !p.IsAlive() {
				t.Fatal("IsAlive = false while the child waits")
			}
			if err := p.Terminate(); err != nil {
				t.Fatal(err)
			}
			// TermGrace < 0: only the function's return ends the child, so
			// it must have seen its ctx cancelled.
			err = p.Wait()
			if p.IsAlive() {
				t.Fatal("IsAlive = true after Wait")
			}
			if clean {
				if err != nil || p.ExitCode() != 0 {
					t.Fatalf("a child that returned nil after SIGTERM: Wait = %v, exit code %d", err, p.ExitCode())
				}
				return
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
				t.Fatalf("a child that returned ctx.Err() after SIGTERM: Wait = %v, want death by SIGTERM", err)
			}
			if p.ExitCode() != -1 {
				t.Fatalf("ExitCode = %d, want -1", p.ExitCode())
			}
			if err := p.Terminate(); !errors.Is(err, os.ErrProcessDone) {
				t.Fatalf("Terminate after exit = %v, want os.ErrProcessDone", err)
			}
		})
	}
}

func TestWaitContext(t *testing.T) {
	p, err := spawn.Start(t.Context(), sleep, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	waited := make(chan error, 1)
	go func() { waited <- p.WaitContext(ctx) }()
	select {
	case err := <-waited:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitContext past its deadline = %v, want DeadlineExceeded", err)
		}
	case <-time.After(30 * time.Second):
		p.Kill()
		t.Fatal("WaitContext did not return 30 s after its deadline")
	}
	if !p.IsAlive() {
		t.Fatal("the child is not alive after WaitContext's deadline")
	}
	p.Kill()
	if err := p.WaitContext(t.Context()); err == nil || err != p.Wait() {
		t.Fatalf("WaitContext after Kill = %v, want Wait's %v", err, p.Wait())
	}
}

func TestActiveChildren(t *testing.T) {
	var ps []*spawn.Process
	for range 2 {
		p, err := spawn.Start(t.Context(), sleep, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Kill()
		ps = append(ps, p)
	}
	active := spawn.ActiveChildren()
	i, j := slices.Index(active, ps[0]), slices.Index(active, ps[1])
	if i < 0 || j < 0 || i > j {
		t.Fatalf("ActiveChildren = %v, want both children, oldest first", active)
	}
	ps[0].Kill()
	ps[0].Wait()
	active = spawn.ActiveChildren()
	if slices.Contains(active, ps[0]) || !slices.Contains(active, ps[1]) {
		t.Fatalf("after the first child's death, ActiveChildren = %v", active)
	}
}

func TestArgumentWithChan(t *testing.T) {
	_, err := spawn.Start(t.Context(), chanFunc, chanArg{N: 1, Done: make(chan struct{})}, nil)
	if err == nil || !strings.Contains(err.Error(), "field spawn_test.chanArg.Done") || !strings.Contains(err.Error(), "channel") {
		t.Fatalf("Start with a chan field = %v, want an error naming the field and its kind", err)
	}
}

// TestActiveChildrenConcurrent: ActiveChildren, IsAlive, ExitCode, Wait
// and WaitContext from many goroutines while children exit and are reaped
// (run with -race): once Wait has returned, the child is neither alive nor
// among ActiveChildren, and its exit code is known.
func TestActiveChildrenConcurrent(t *testing.T) {
	const n = 6
	ps := make([]*spawn.Process, n)
	for i := range ps {
		p, err := spawn.Start(t.Context(), sleep, time.Duration(i)*time.Millisecond, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Kill()
		ps[i] = p
	}
	stop := make(chan struct{})
	polled := make(chan int)
	go func() {
		k := 0
		for {
			select {
			case <-stop:
				polled <- k
				return
			default:
			}
			for _, p := range spawn.ActiveChildren() {
				p.IsAlive()
				p.ExitCode()
				p.Name()
			}
			k++
		}
	}()
	errs := make(chan error, 2*n)
	for _, p := range ps {
		for _, wait := range []func() error{p.Wait, func() error { return p.WaitContext(t.Context()) }} {
			go func() {
				if err := wait(); err != nil {
					errs <- err
					return
				}
				switch {
				case p.IsAlive():
					errs <- fmt.Errorf("pid %d alive after Wait", p.Pid)
				case slices.Contains(spawn.ActiveChildren(), p):
					errs <- fmt.Errorf("pid %d among ActiveChildren after Wait", p.Pid)
				case p.ExitCode() != 0:
					errs <- fmt.Errorf("pid %d: exit code %d after Wait", p.Pid, p.ExitCode())
				default:
					errs <- nil
				}
			}()
		}
	}
	for range 2 * n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	if <-polled == 0 {
		t.Error("ActiveChildren was never polled")
	}
}
