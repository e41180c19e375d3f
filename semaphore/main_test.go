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
		if a.F != nil {
			defer a.F.Close()
			return count(a.F, a.V, a.N)
		}
		defer a.M.Close()
		return count(a.M, a.V, a.N)
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

// asleepIn waits until n goroutines of this process sleep in a futex wait
// called from fn (as runtime.Stack names it): each has read the word it
// sleeps on. It fails the test after a minute.
func asleepIn(t testing.TB, n int, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(time.Minute); ; {
		buf = buf[:runtime.Stack(buf[:cap(buf)], true)]
		asleep := 0
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "internal/futex.Wait(") && strings.Contains(g, fn) {
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

// count does n unlocked read-modify-writes of v inside m.
func count(m interface {
	Lock() error
	Unlock() error
}, v *shm.Int64, n int) error {
	for range n {
		if err := m.Lock(); err != nil {
			return err
		}
		v.Store(v.Load() + 1)
		if err := m.Unlock(); err != nil {
			return err
		}
	}
	return nil
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
