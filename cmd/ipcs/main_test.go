//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/semaphore"
	"github.com/ipckit/ipckit/shm"
)

func TestMain(m *testing.M) {
	registerHelpers()
	helperproc.Run(m)
}

// forever blocks a helper until it is killed (helperproc kills it at the
// end of its test, and its parent's death kills it too).
func forever() error {
	for {
		time.Sleep(time.Hour)
	}
}

func registerHelpers() {
	// create KIND NAME: make a named object of KIND, say "ready", hold it.
	helperproc.Register("create", func(a []string) error {
		var err error
		switch a[0] {
		case "bytes":
			_, err = shm.Create(a[1], 4096, nil)
		case "queue":
			_, err = ipcqueue.Create(a[1], 1024, nil)
		case "mutex":
			_, err = semaphore.CreateMutex(a[1], nil)
		default:
			err = fmt.Errorf("no kind %q", a[0])
		}
		if err != nil {
			return err
		}
		fmt.Println("ready")
		return forever()
	})
	// open NAME: map the named segment, say "ready", hold it.
	helperproc.Register("open", func(a []string) error {
		if _, err := shm.Open(a[0]); err != nil {
			return err
		}
		fmt.Println("ready")
		return forever()
	})
	// lock NAME: lock the named Mutex, say "locked", hold it.
	helperproc.Register("lock", func(a []string) error {
		m, err := semaphore.OpenMutex(a[0])
		if err != nil {
			return err
		}
		if err := m.Lock(); err != nil {
			return err
		}
		fmt.Println("locked")
		return forever()
	})
	// get NAME: wait in Get on the named (empty) queue, which holds its
	// consumer lock while it waits.
	helperproc.Register("get", func(a []string) error {
		q, err := ipcqueue.Open(a[0])
		if err != nil {
			return err
		}
		fmt.Println("getting")
		_, err = q.Get(context.Background())
		return fmt.Errorf("Get returned: %v", err)
	})
	// anon: make an anonymous queue, put a message, say "ready", hold it.
	helperproc.Register("anon", func(a []string) error {
		q, err := ipcqueue.New(1024, nil)
		if err != nil {
			return err
		}
		if err := q.Put(context.Background(), []byte("hello")); err != nil {
			return err
		}
		fmt.Println("ready")
		return forever()
	})
	// hide NAME: open the named segment, make this process non-dumpable
	// (its /proc entries then belong to root, so that other processes of
	// its user may not read them), say "ready", hold it.
	helperproc.Register("hide", func(a []string) error {
		if _, err := shm.Open(a[0]); err != nil {
			return err
		}
		const prSetDumpable = 4
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); e != 0 {
			return e
		}
		fmt.Println("ready")
		return forever()
	})
	// ipcs ARGS...: run ipcs, for a test that needs another user's view.
	helperproc.Register("ipcs", func(a []string) error {
		os.Exit(run(a, os.Stdout, os.Stderr))
		return nil
	})
}

// start starts helper name with args and waits for its first line, want.
func start(t *testing.T, want, name string, args ...string) *helperproc.Proc {
	t.Helper()
	cmd := helperproc.Command(t, name, args...)
	helperproc.NoExitSleep(cmd)
	p := helperproc.Start(t, cmd)
	p.Expect(t, want)
	return p
}

// ipcs runs ipcs with args in this process and returns its exit code and
// output.
func ipcs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// mustIpcs runs ipcs and fails the test unless it exits 0.
func mustIpcs(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := ipcs(t, args...)
	if code != 0 {
		t.Fatalf("ipcs %q exited %d:\n%s%s", args, code, out, errs)
	}
	return out
}

// name returns a fresh segment name and removes it at the end of the test.
func name(t *testing.T) string {
	n := helperproc.Name(t)
	t.Cleanup(func() { os.Remove(shm.Path(n)) })
	return n
}

// exists reports whether the named segment's file is there.
func exists(name string) bool {
	_, err := os.Lstat(shm.Path(name))
	return err == nil
}

// jsonLines decodes every line of out into a map, failing the test on a
// line that is not one JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil || dec.More() {
			t.Fatalf("not one JSON object per line (%v): %q", err, line)
		}
		objs = append(objs, m)
	}
	return objs
}

// lsOne returns ls -json's object for the one name or PID:FD pattern.
func lsOne(t *testing.T, pattern string) map[string]any {
	t.Helper()
	objs := jsonLines(t, mustIpcs(t, "ls", "-json", pattern))
	if len(objs) != 1 {
		t.Fatalf("ls -json %s listed %d objects, want 1: %v", pattern, len(objs), objs)
	}
	return objs[0]
}

// pids returns the Pids of an ls -json object.
func pids(o map[string]any) []int {
	var ps []int
	list, _ := o["Pids"].([]any)
	for _, p := range list {
		n, _ := strconv.Atoi(fmt.Sprint(p))
		ps = append(ps, n)
	}
	return ps
}

// waitFor polls cond until it holds, failing after a minute (only a hang
// misses that).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// asUser runs helper name with args as uid, from a copy of the test binary
// that uid may run, and returns its stdout; it skips the test if that
// cannot be arranged.
func asUser(t *testing.T, uid int, name string, args ...string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ipcs-uid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	cp := dir + "/ipcs.test"
	if err := os.WriteFile(cp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := helperproc.Command(t, name, args...)
	helperproc.NoExitSleep(cmd)
	cmd.Path, cmd.Args[0] = cp, cp
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Skipf("cannot run a helper as uid %d: %v", uid, err)
		}
		t.Fatalf("helper as uid %d: %v\n%s", uid, err, out.String())
	}
	return out.String()
}

// TestHelp: "ipcs -h" and "ipcs help" list the commands; "ipcs ls -h" is
// ls's own flags.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		code, out, _ := ipcs(t, args...)
		if code != 0 || !strings.Contains(out, "usage: ipcs COMMAND") || !strings.Contains(out, "gc ") {
			t.Errorf("ipcs %v = %d, %q; want the command list", args, code, out)
		}
	}
	if _, out, errs := ipcs(t, "ls", "-h"); strings.Contains(out+errs, "usage: ipcs COMMAND") || !strings.Contains(out+errs, "-json") {
		t.Errorf("ipcs ls -h = %q %q; want ls's flags", out, errs)
	}
}
