//go:build linux

package ipcpipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// The children of these tests get their end in a spawn argument, as a
// user's would.

type echoArg struct{ C *Typed[*msg] }

// echo sends back every value it receives, until the end of the pipe.
var echo = spawn.Register("ipcpipe.echo", func(ctx context.Context, a echoArg) error {
	defer a.C.Close()
	for {
		v, err := a.C.Recv(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := a.C.Send(ctx, v); err != nil {
			return err
		}
	}
})

type streamArg struct {
	C     *Conn
	N     int
	Fault string // "send": die inside the Send after the N messages
}

// stream sends N stamped messages, then "ready", then dies inside one
// more Send (Fault "send") or waits to be killed.
var stream = spawn.Register("ipcpipe.stream", func(ctx context.Context, a streamArg) error {
	for s := range a.N {
		if err := a.C.Send(ctx, stamp(uint64(s), 64)); err != nil {
			return err
		}
	}
	if a.Fault == "send" {
		a.C.faults.sendCopied = killSelf
		a.C.Send(ctx, stamp(uint64(a.N), 64))
	}
	if err := a.C.Send(ctx, []byte("ready")); err != nil {
		return err
	}
	time.Sleep(time.Hour) // until killed, reading nothing
	return nil
})

// killSelf is the fault hook of the crash tests: SIGKILL, for real.
func killSelf() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// startChild starts fn with arg, killing it at the test's end.
func startChild[A any](t *testing.T, fn *spawn.Func[A], arg A) *spawn.Process {
	t.Helper()
	p, err := spawn.Start(t.Context(), fn, arg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill(); p.Wait() })
	return p
}

// TestAcrossProcesses: values go to a child and back; once the child has
// its end, the parent's handle to it fails with ErrMoved and closing that
// handle does not close the end; closing the parent's end ends the child's
// loop with io.EOF, and the child's exit then gives the parent io.EOF.
func TestAcrossProcesses(t *testing.T) {
	ctx := t.Context()
	a, b, err := New(true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ta, _ := NewTyped[*msg](a)
	tb, _ := NewTyped[*msg](b)
	p := startChild(t, echo, echoArg{C: tb})
	round := func(i int) {
		t.Helper()
		want := &msg{Name: strings.Repeat("x", i), N: []int{i}}
		if err := ta.Send(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := ta.Recv(ctx)
		if err != nil || got == nil || got.Name != want.Name || got.N[0] != i {
			t.Fatalf("echo %d = %+v, %v", i, got, err)
		}
	}
	round(1)
	if err := b.Send(ctx, []byte("x")); !errors.Is(err, ErrMoved) {
		t.Fatalf("Send on the end handed to the child = %v, want ErrMoved", err)
	}
	b.Close() // the Python habit: it must not close the child's end
	for i := range 100 {
		round(i)
	}
	if err := ta.Send(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if v, err := ta.Recv(ctx); err != nil || v != nil {
		t.Fatalf("a nil echoed = %+v, %v", v, err)
	}
	a.Close()
	if err := p.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

// TestCloseAfterStart: the parent closes its copy of the child's end right
// after starting it, before the child attached it (the Python habit, at
// its earliest): the end still works in the child.
func TestCloseAfterStart(t *testing.T) {
	// A child that cannot attach its end leaves it to the parent, and a
	// Recv would wait for ever: bound it.
	ctx, cancel := context.WithTimeout(t.Context(), slowBound)
	defer cancel()
	a, b, err := New(true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := startChild(t, stream, streamArg{C: b, N: 3})
	b.Close()
	for i := range 3 {
		m, err := a.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s, err := checkStamp(m); err != nil || s != uint64(i) {
			t.Fatalf("message %d: %d, %v", i, s, err)
		}
	}
	if m, err := a.Recv(ctx); err != nil || string(m) != "ready" {
		t.Fatalf("Recv = %q, %v", m, err)
	}
	if err := a.Send(ctx, []byte("x")); err != nil {
		t.Fatalf("Send to the child's end = %v", err)
	}
	_ = p
}

// TestPeerKilled: a child killed by SIGKILL while the parent waits in Recv
// ends that Recv, after the messages it sent, with an error that is both
// ErrPeerDied (naming its pid) and io.EOF.
func TestPeerKilled(t *testing.T) {
	for _, fault := range []string{"", "send"} {
		t.Run("fault="+fault, func(t *testing.T) {
			ctx := t.Context()
			a, b, err := New(true, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			a.SetSpin(-1)
			const n = 50
			p := startChild(t, stream, streamArg{C: b, N: n, Fault: fault})
			b.Close()
			for i := range n {
				m, err := a.Recv(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if s, err := checkStamp(m); err != nil || s != uint64(i) {
					t.Fatalf("message %d: %d, %v", i, s, err)
				}
			}
			if fault == "" {
				if m, err := a.Recv(ctx); err != nil || string(m) != "ready" {
					t.Fatalf("Recv = %q, %v", m, err)
				}
				got := make(chan error, 1)
				go func() { _, err := a.Recv(ctx); got <- err }()
				asleep(t, 1, "ipcpipe.(*Conn).recv")
				p.Signal(syscall.SIGKILL)
				err = within(t, got, "Recv")
				checkDied(t, err, p.Pid, io.EOF)
			} else {
				// The child died inside its Send of message n: nothing
				// of it arrives, and the end is EOF.
				got := make(chan error, 1)
				go func() { _, err := a.Recv(ctx); got <- err }()
				checkDied(t, within(t, got, "Recv"), p.Pid, io.EOF)
			}
			if _, err := a.Recv(ctx); !errors.Is(err, io.EOF) {
				t.Fatalf("Recv again = %v", err)
			}
		})
	}
}

func checkDied(t *testing.T, err error, pid int, base error) {
	t.Helper()
	if !errors.Is(err, ErrPeerDied) || !errors.Is(err, base) || !strings.Contains(err.Error(), fmt.Sprint(pid)) {
		t.Fatalf("after the peer's SIGKILL: %v; want ErrPeerDied and %v, naming pid %d", err, base, pid)
	}
}

// TestPeerKilledSend: a Send waiting on a full pipe whose reader is killed
// returns an error that is both ErrPeerDied and io.ErrClosedPipe.
func TestPeerKilledSend(t *testing.T) {
	ctx := t.Context()
	a, b, err := New(true, &Options{Size: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetSpin(-1)
	p := startChild(t, stream, streamArg{C: b})
	b.Close()
	if m, err := a.Recv(ctx); err != nil || string(m) != "ready" {
		t.Fatalf("Recv = %q, %v", m, err)
	}
	fill(t, a)
	sent := make(chan error, 1)
	go func() { sent <- a.Send(ctx, []byte("x")) }()
	asleep(t, 1, "ipcpipe.(*Conn).waitSpace")
	p.Signal(syscall.SIGKILL)
	checkDied(t, within(t, sent, "Send"), p.Pid, io.ErrClosedPipe)
}

// TestNamed: a named pipe's end opened by name carries messages; closing
// it is EOF for the other end; a closed end cannot be opened.
func TestNamed(t *testing.T) {
	ctx := t.Context()
	name := helperproc.Name(t)
	a, b, err := Create(name, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer a.Close()
	defer b.Close()
	if _, _, err := Create(name, true, nil); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Create of a taken name = %v", err)
	}
	b2, err := Open(name, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Send(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m, err := a.Recv(ctx); err != nil || string(m) != "hello" {
		t.Fatalf("Recv = %q, %v", m, err)
	}
	b2.Close()
	if _, err := a.Recv(ctx); err != io.EOF {
		t.Fatalf("Recv after the end's Close = %v, want io.EOF", err)
	}
	if _, err := Open(name, 1); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Open of a closed end = %v, want os.ErrClosed", err)
	}
	if _, err := Open(name, 2); !errors.Is(err, os.ErrInvalid) {
		t.Fatalf("Open of end 2 = %v, want os.ErrInvalid", err)
	}
}

type drainArg struct {
	C *Conn
	N int
}

// drainAndDie receives N messages, then dies by SIGKILL inside the next
// receive, after copying the message out and before taking it.
var drainAndDie = spawn.Register("ipcpipe.drainAndDie", func(ctx context.Context, a drainArg) error {
	for range a.N {
		if _, err := a.C.Recv(ctx); err != nil {
			return err
		}
	}
	a.C.faults.recvCopied = killSelf
	a.C.Recv(ctx)
	return errors.New("survived its fault")
})

// TestPeerKilledRecv: a reader killed inside Recv after the copy-out and
// before the head store leaves that message in the pipe (Inspect counts
// it, with the reader's end held by a dead pid), and the writer's Send on
// the then full pipe returns ErrPeerDied and io.ErrClosedPipe.
func TestPeerKilledRecv(t *testing.T) {
	ctx := t.Context()
	a, b, err := New(true, &Options{Size: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetSpin(-1)
	const n, extra = 5, 3
	for i := range n + extra {
		if err := a.Send(ctx, stamp(uint64(i), 64)); err != nil {
			t.Fatal(err)
		}
	}
	p := startChild(t, drainAndDie, drainArg{C: b, N: n})
	b.Close()
	var exit *exec.ExitError
	if err := p.Wait(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child's Wait = %v, want killed by SIGKILL", err)
	}
	st, err := Inspect(a.Segment().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Dirs[0]; d.Taken != n*recLen(64) || d.Messages != extra {
		t.Fatalf("direction 0 after the reader died in Recv: %+v, want %d taken bytes and %d messages left", d, n*recLen(64), extra)
	}
	if o := st.Ends[1].Owner; o.Pid != p.Pid || o.State != "dead" {
		t.Fatalf("end 1's owner: %v, want pid %d dead", o, p.Pid)
	}
	sent := make(chan error, 1)
	go func() {
		for {
			if err := a.Send(ctx, []byte("x")); err != nil {
				sent <- err
				return
			}
		}
	}()
	checkDied(t, within(t, sent, "Sends until the pipe is full"), p.Pid, io.ErrClosedPipe)
}

// TestOpenDamaged: Open of a named pipe whose control block has a flipped
// byte, or whose file was truncated, is an error wrapping ErrCorrupt, not
// a crash, and the pipe's own handles are left as they were.
func TestOpenDamaged(t *testing.T) {
	name := helperproc.Name(t)
	a, b, err := Create(name, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer a.Close()
	defer b.Close()
	mem := a.Segment().Bytes()
	mem[offRing+1] ^= 0x40
	if _, err := Open(name, 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with a flipped byte in the control block = %v, want ErrCorrupt", err)
	}
	mem[offRing+1] ^= 0x40
	if err := os.Truncate(shm.Path(name), int64(len(mem)/2)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name, 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a truncated pipe = %v, want ErrCorrupt", err)
	}
	if err := a.Segment().Check(); !errors.Is(err, shm.ErrSize) {
		t.Fatalf("Check of the truncated pipe = %v, want shm.ErrSize", err)
	}
}
