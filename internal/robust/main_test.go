//go:build linux

package robust

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/sentinel"
	"github.com/ipckit/ipckit/internal/shmfile"
)

// Helpers re-run this test binary (helperproc). They find the shared memory
// by the path of a file in /dev/shm and an offset.

func TestMain(m *testing.M) {
	// hold PATH OFF: lock, say "locked", then wait for stdin to close and
	// exit without unlocking (a death the kernel sees like any other), or
	// be killed.
	helperproc.Register("hold", func(args []string) error {
		l, err := helperLock(args)
		if err != nil {
			return err
		}
		if err := l.Lock(context.Background()); err != nil && !errors.Is(err, sentinel.ErrOwnerDead) {
			return err
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin)
		return nil
	})
	// handoff PATH OFF [wakeall]: Lock (calling WakeAllWaiters once it has
	// the lock, with wakeall), say "locked"; then Unlock on a line "unlock"
	// on stdin (saying "unlocked"), and live until stdin closes.
	helperproc.Register("handoff", func(args []string) error {
		l, err := helperLock(args)
		if err != nil {
			return err
		}
		if err := l.Lock(context.Background()); err != nil {
			return err
		}
		if len(args) > 2 && args[2] == "wakeall" {
			l.WakeAllWaiters()
		}
		fmt.Println("locked")
		in := bufio.NewReader(os.Stdin)
		for {
			line, err := in.ReadString('\n')
			if err != nil {
				return nil
			}
			if line == "unlock\n" {
				if err := l.Unlock(); err != nil {
					return err
				}
				fmt.Println("unlocked")
			}
		}
	})
	// grab PATH OFF [wakeall]: say "ready", wait for a line on stdin, take
	// the lock with TryLockFree, polling (never asleep on it), call
	// WakeAllWaiters with wakeall, say "locked", and live until stdin
	// closes.
	helperproc.Register("grab", func(args []string) error {
		l, err := helperLock(args)
		if err != nil {
			return err
		}
		fmt.Println("ready")
		in := bufio.NewReader(os.Stdin)
		if _, err := in.ReadString('\n'); err != nil {
			return err
		}
		for !l.TryLockFree() {
			time.Sleep(100 * time.Microsecond)
		}
		if len(args) > 2 && args[2] == "wakeall" {
			l.WakeAllWaiters()
		}
		fmt.Println("locked")
		io.Copy(io.Discard, in)
		return nil
	})
	// try PATH OFF: TryLock, print the outcome, and a 200 ms Lock's.
	helperproc.Register("try", func(args []string) error {
		l, err := helperLock(args)
		if err != nil {
			return err
		}
		ok, err := l.TryLock()
		fmt.Printf("trylock %v %v\n", ok, err)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		fmt.Printf("lock %v\n", l.Lock(ctx))
		return nil
	})
	// count PATH OFF N [nospin]: say "ready", wait for a line on stdin,
	// then run N critical sections that increment the counter after the
	// lock non-atomically and check that nobody else is inside; then print
	// this process's unwoken sleeps.
	helperproc.Register("count", func(args []string) error {
		l, err := helperLock(args)
		if err != nil {
			return err
		}
		if len(args) > 3 && args[3] == "nospin" {
			l.spin.SetMax(-1)
		}
		n, _ := strconv.Atoi(args[2])
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return err
		}
		b, err := mapPath(args[0])
		if err != nil {
			return err
		}
		off, _ := strconv.Atoi(args[1])
		if err := count(l, counterAt(b, off), n); err != nil {
			return err
		}
		fmt.Printf("unwoken %d\n", Unwoken())
		return nil
	})
	// pingpong PATH OFF N: say "ready", wait for a line on stdin, play
	// party 1 of pingPong, then print this process's unwoken sleeps.
	helperproc.Register("pingpong", func(args []string) error {
		l, err := helperLock(args)
		if err != nil {
			return err
		}
		l.spin.SetMax(-1)
		b, err := mapPath(args[0])
		if err != nil {
			return err
		}
		off, _ := strconv.Atoi(args[1])
		n, _ := strconv.Atoi(args[2])
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return err
		}
		if err := pingPong(context.Background(), l, pingPongAt(b, off), 1, n); err != nil {
			return err
		}
		fmt.Printf("unwoken %d\n", Unwoken())
		return nil
	})
	// wait PATH OFF DUR: wait for the lock (held by the test) for DUR,
	// then print the CPU time this process used and its futex sleeps.
	helperproc.Register("wait", func(args []string) error { return waitHelper(args, false) })
	// waitself PATH OFF DUR: the same, for a lock this process holds.
	helperproc.Register("waitself", func(args []string) error { return waitHelper(args, true) })
	// idle PATH OFF DUR: no wait at all, a time.Sleep (the baseline: what
	// an idle Go process costs here).
	helperproc.Register("idle", func(args []string) error { return waitHelper(args, false) })
	helperproc.Run(m)
}

func waitHelper(args []string, self bool) error {
	l, err := helperLock(args)
	if err != nil {
		return err
	}
	if self {
		if err := l.Lock(context.Background()); err != nil {
			return err
		}
	}
	d, err := time.ParseDuration(args[2])
	if err != nil {
		return err
	}
	// CPU over the whole wait, and over the steady state: from 1/10 of
	// it (past the start: the first check, following the holder) to the
	// end.
	cpu := func() time.Duration {
		var r unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &r)
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	c0 := cpu()
	ctx, cancel := context.WithTimeout(context.Background(), d+d/10)
	defer cancel()
	steady := make(chan time.Duration, 1)
	time.AfterFunc(d/10, func() { steady <- cpu() })
	if helperproc.IsHelper() && os.Getenv("IPCKIT_TEST_HELPER") == "idle" {
		<-ctx.Done()
		err = ctx.Err()
	} else {
		err = l.Lock(ctx)
	}
	c2 := cpu()
	c1 := <-steady
	fmt.Printf("cpu %d steady %d waits %d err %v\n", (c2 - c0).Nanoseconds(), (c2 - c1).Nanoseconds(), l.waits.Load(), err)
	return nil
}

// helperLock maps args[0] and returns a handle to the lock at args[1].
func helperLock(args []string) (*Lock, error) {
	b, err := mapPath(args[0])
	if err != nil {
		return nil, err
	}
	off, err := strconv.Atoi(args[1])
	if err != nil {
		return nil, err
	}
	return At(b[off:], &Options{Waits: new(atomic.Uint64)})
}

const shmSize = 4096

// shmFile makes a zeroed file in /dev/shm, maps it, and removes it at the
// end of the test.
func shmFile(t testing.TB) (path string, b []byte) {
	t.Helper()
	path = shmfile.Path(helperproc.Name(t))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	defer f.Close()
	if err := f.Truncate(shmSize); err != nil {
		t.Fatal(err)
	}
	b, err = unix.Mmap(int(f.Fd()), 0, shmSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return path, b
}

func mapPath(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return unix.Mmap(int(f.Fd()), 0, shmSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

// heapBuf returns a zeroed, 8-aligned heap buffer, where the race
// detector sees the lock's words themselves.
func heapBuf(n int) []byte {
	w := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), n)
}

func mustAt(t testing.TB, b []byte, opts *Options) *Lock {
	t.Helper()
	l, err := At(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// counter is the state count's critical sections guard: a plain-looking
// counter (read, then written: lost updates show broken exclusion) and
// an "inside" flag that must be 0 on entry.
type counter struct {
	inside *atomic.Uint32
	n      *atomic.Uint64
}

// counterOff is where tests put the counter, after the lock.
const counterOff = 64

func counterAt(b []byte, off int) counter {
	return counter{
		inside: (*atomic.Uint32)(unsafe.Pointer(&b[off+counterOff])),
		n:      (*atomic.Uint64)(unsafe.Pointer(&b[off+counterOff+8])),
	}
}

func count(l *Lock, c counter, n int) error {
	ctx := context.Background()
	for i := range n {
		if err := l.Lock(ctx); err != nil {
			return err
		}
		if !c.inside.CompareAndSwap(0, 1) {
			return fmt.Errorf("iteration %d: somebody else is inside the critical section", i)
		}
		v := c.n.Load()
		procyield(50) // widen the window a broken lock would show in
		c.n.Store(v + 1)
		c.inside.Store(0)
		if err := l.Unlock(); err != nil {
			return err
		}
	}
	return nil
}

// pingPongState is the shared state of pingPong, after the lock.
type pingPongState struct {
	turn *atomic.Uint64    // acquisitions so far
	want [2]*atomic.Uint32 // party p is about to Lock
	done [2]*atomic.Uint32 // party p has finished
}

func pingPongAt(b []byte, off int) pingPongState {
	u32 := func(o int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&b[off+o])) }
	return pingPongState{
		turn: (*atomic.Uint64)(unsafe.Pointer(&b[off+counterOff])),
		want: [2]*atomic.Uint32{u32(counterOff + 8), u32(counterOff + 12)},
		done: [2]*atomic.Uint32{u32(counterOff + 16), u32(counterOff + 20)},
	}
}

// pingPong plays party p (0 or 1) for n rounds: announce, Lock, then hold
// the lock until the other party announces (or has finished), Unlock, and
// wait until the other party has taken it (or has finished) before the
// next round. Every Unlock of a round thus has a waiter that nobody else
// will wake.
func pingPong(ctx context.Context, l *Lock, s pingPongState, p, n int) error {
	q := 1 - p
	defer s.done[p].Store(1)
	for i := range n {
		s.want[p].Store(1)
		if err := l.Lock(ctx); err != nil {
			return fmt.Errorf("party %d, round %d: %w", p, i, err)
		}
		s.want[p].Store(0)
		t := s.turn.Add(1)
		for s.want[q].Load() == 0 && s.done[q].Load() == 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			yield()
		}
		// Give the other party a moment to fall asleep, so that most
		// rounds need a wake-up.
		for t0 := time.Now(); time.Since(t0) < 100*time.Microsecond; {
			yield()
		}
		if err := l.Unlock(); err != nil {
			return err
		}
		for s.turn.Load() == t && s.done[q].Load() == 0 {
			if ctx.Err() != nil {
				return fmt.Errorf("party %d, round %d: the other party never took the lock: %w", p, i, ctx.Err())
			}
			yield()
		}
	}
	return nil
}

// startCred starts helper name as uid (and gid) uid, and skips the test if
// that uid cannot run the test binary.
func startCred(t testing.TB, uid uint32, name string, args ...string) *helper {
	t.Helper()
	// The test binary's directory is private: run a copy from one that
	// everybody may enter.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "robust-uid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	cp := dir + "/robust.test"
	if err := os.WriteFile(cp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("setpriv", "--reuid", strconv.Itoa(int(uid)), "--regid", strconv.Itoa(int(uid)), "--clear-groups", "test", "-x", cp).Run(); err != nil {
		t.Skipf("uid %d cannot run %s (%v)", uid, cp, err)
	}
	return startWith(t, func(cmd *exec.Cmd) {
		cmd.Path = cp
		cmd.Args[0] = cp
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid}
	}, name, args...)
}

// yield lets the other goroutines of the process run, and the other
// processes too: pingPong's parties wait for each other busily, and on a
// machine with few CPUs and other load the one they wait for must run.
func yield() {
	runtime.Gosched()
	unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}

// helper is a started helper process with its stdin and stdout.
type helper struct {
	*helperproc.Proc
	in io.WriteCloser
}

// start starts helper name with args, and waits for its first line if want
// is not empty.
func start(t testing.TB, want string, name string, args ...string) *helper {
	t.Helper()
	h := startWith(t, func(*exec.Cmd) {}, name, args...)
	if want != "" {
		h.Expect(t, want)
	}
	return h
}

// startWith starts helper name with args, after setup has adjusted its
// command.
func startWith(t testing.TB, setup func(*exec.Cmd), name string, args ...string) *helper {
	t.Helper()
	cmd := helperproc.Command(t, name, args...)
	helperproc.NoExitSleep(cmd)
	setup(cmd)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	return &helper{Proc: helperproc.Start(t, cmd), in: in}
}

// exit closes the helper's stdin and waits for it to exit.
func (h *helper) exit(t testing.TB) {
	h.in.Close()
	if err := h.Cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// holdByte takes a write lock on byte n of uid's registry through a
// description of its own, as another process would, and returns its
// release.
func holdByte(t testing.TB, uid, n uint32) func() {
	t.Helper()
	f, err := os.OpenFile(liveness.Path(uid), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: int64(n), Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return func() { f.Close() }
}
