//go:build linux

package semaphore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
)

// Helpers receive their shared objects the way spawn passes them: gob
// handles in an argument, anonymous segments as inherited descriptors.

type counterArgs struct {
	M *Mutex
	F *FileMutex
	V *shm.Int64
	N int
	// The start line and tally of countTogether: Procs processes wait
	// until Ready counts them all; each that saw another's update between
	// two of its own adds 1 to Mixed.
	Ready, Mixed *shm.Int64
	Procs        int
}

type holdArgs struct {
	M    *Mutex
	F    *FileMutex
	S    *Semaphore
	B    *Barrier
	E    *Event
	Int  *shm.Int64
	Told *shm.Int64
}

func TestMain(m *testing.M) {
	helperproc.Register("count", func(args []string) error {
		var a counterArgs
		if err := receive(args, &a); err != nil {
			return err
		}
		defer a.V.Close()
		var m interface {
			locker
			Close() error
		} = a.M
		if a.F != nil {
			m = a.F
		}
		defer m.Close()
		return count(m, a)
	})
	helperproc.Register("hold", func(args []string) error {
		// Take what it was given, say so, then wait to be killed.
		var a holdArgs
		if err := receive(args, &a); err != nil {
			return err
		}
		ctx := context.Background()
		var err error
		switch {
		case a.M != nil:
			err = a.M.Lock()
		case a.F != nil:
			err = a.F.Lock()
		case a.S != nil:
			err = a.S.Acquire(ctx)
		case a.E != nil:
			// The event is clear until we say "waiting": a Wait with a
			// deadline must run into it.
			tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			err = a.E.Wait(tctx)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("Wait on a clear event = %v, want DeadlineExceeded", err)
			}
			fmt.Println("waiting")
			err = a.E.Wait(ctx)
			if err == nil {
				a.Int.Add(1)
			}
			return err
		case a.B != nil:
			fmt.Println("waiting")
			_, err = a.B.Wait(ctx)
			return err
		}
		if errors.Is(err, ErrOwnerDead) {
			err = nil // hold it, inconsistent
		}
		if err != nil {
			return err
		}
		fmt.Println("holding")
		time.Sleep(time.Minute)
		return nil
	})
	helperproc.Run(m)
}

// registerHold registers a helper that receives holdArgs.
func registerHold(name string, f func(holdArgs) error) {
	helperproc.Register(name, func(args []string) error {
		var a holdArgs
		if err := receive(args, &a); err != nil {
			return err
		}
		return f(a)
	})
}

// slowBound bounds what must happen "promptly" in a test (a dead holder's
// lock handed on, a cancelled call returning): far more than it takes (a
// few ms), so that a loaded machine, which can keep a process off the CPU
// for hundreds of ms, does not fail the test; it still catches a hang.
// That a death is found by the kernel's notice, not by a slow check, is
// TestDeadHolderWithinDeadline's to show.
const slowBound = 5 * time.Second

// asleepIn waits until n goroutines of this process are blocked in fn (as
// runtime.Stack names it): asleep in a futex wait, each having read the
// word it sleeps on, or parked in a select (FileMutex's gate). It fails the
// test after a minute.
func asleepIn(t testing.TB, n int, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(time.Minute); ; {
		buf = buf[:runtime.Stack(buf[:cap(buf)], true)]
		asleep := 0
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			blocked := strings.Contains(g, "internal/futex.Wait(") || strings.Contains(header, "[select")
			if blocked && strings.Contains(g, fn) {
				asleep++
			}
		}
		if asleep >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines asleep in %s, want %d", asleep, fn, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// within returns what done delivers, failing the test if that takes longer
// than slowBound: what should have been woken was not.
func within(t testing.TB, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(slowBound):
		t.Fatalf("%s did not return within %v", what, slowBound)
		return nil
	}
}

// count does a.N unlocked read-modify-writes of a.V inside m. With a
// start line (a.Ready), it first waits until a.Procs processes are there,
// and at the end adds 1 to a.Mixed if one of its turns found a.V moved by
// another process since its own previous turn.
func count(m locker, a counterArgs) error {
	if a.Ready != nil {
		a.Ready.Add(1)
		for deadline := time.Now().Add(time.Minute); a.Ready.Load() < int64(a.Procs); time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d processes at the start line after a minute", a.Ready.Load(), a.Procs)
			}
		}
	}
	mine, mixed := int64(-1), false // a.V after our last turn
	for range a.N {
		if err := m.Lock(); err != nil {
			return err
		}
		v := a.V.Load()
		mixed = mixed || mine >= 0 && v != mine
		mine = v + 1
		a.V.Store(mine)
		if err := m.Unlock(); err != nil {
			return err
		}
	}
	if mixed && a.Mixed != nil {
		a.Mixed.Add(1)
	}
	return nil
}

// countTogether runs procs processes, this one and procs-1 helpers given
// a (with its lock, M or F; m is the same lock here), that make
// rmwPerProcess unlocked read-modify-writes each of one shared counter
// inside the lock, starting together. It fails the test if an update was
// lost, and returns only once every process saw another's updates between
// two of its own, so that the lock had processes to exclude: a scene a
// loaded machine ran one process at a time is played again.
func countTogether(t *testing.T, procs int, a counterArgs, m locker) {
	t.Helper()
	const attempts = 10
	for attempt := 1; ; attempt++ {
		var objs [3]*shm.Int64
		for i := range objs {
			v, err := shm.NewInt64()
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			objs[i] = v
		}
		a.V, a.Ready, a.Mixed, a.N, a.Procs = objs[0], objs[1], objs[2], rmwPerProcess, procs
		var wg sync.WaitGroup
		for range procs - 1 {
			cmd := start(t, "count", a)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				if err := cmd.Wait(); err != nil {
					t.Error(err)
				}
			})
		}
		err := count(m, a)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := a.V.Load(), int64(procs*rmwPerProcess); got != want {
			t.Fatalf("total %d, want %d: mutual exclusion failed", got, want)
		}
		mixed := a.Mixed.Load()
		if mixed == int64(procs) {
			return
		}
		if attempt == attempts {
			t.Fatalf("in %d attempts the processes never all overlapped (last: %d of %d saw another's updates)", attempts, mixed, procs)
		}
		t.Logf("attempt %d: %d of %d processes saw another's updates; again", attempt, mixed, procs)
	}
}

// start starts helper name with v, passing anonymous segments as inherited
// descriptors, as spawn does.
func start(t testing.TB, name string, v any) *exec.Cmd {
	t.Helper()
	var buf bytes.Buffer
	files, ids, release := handoff.Collect(v)
	defer release()
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	fds := make([]string, len(ids))
	for i, id := range ids {
		fds[i] = strconv.Itoa(id)
	}
	cmd := helperproc.Command(t, name, strings.Join(fds, ","), base64.StdEncoding.EncodeToString(buf.Bytes()))
	cmd.ExtraFiles = files
	return cmd
}

func receive(args []string, v any) error {
	var ids []int
	var files []*os.File
	for fd := range strings.FieldsFuncSeq(args[0], func(r rune) bool { return r == ',' }) {
		id, err := strconv.Atoi(fd)
		if err != nil {
			return err
		}
		ids = append(ids, id)
		files = append(files, os.NewFile(uintptr(handoff.FirstFD+len(files)), "inherited"))
	}
	handoff.SetInherited(ids, files)
	b, err := base64.StdEncoding.DecodeString(args[1])
	if err != nil {
		return err
	}
	return gob.NewDecoder(bytes.NewReader(b)).Decode(v)
}

// startUntil starts helper name with v and waits for it to print line.
func startUntil(t testing.TB, name string, v any, line string) *exec.Cmd {
	t.Helper()
	h := helperproc.Start(t, start(t, name, v))
	h.Expect(t, line)
	return h.Cmd
}
