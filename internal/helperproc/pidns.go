//go:build linux

package helperproc

import (
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

// unshareArgs runs a command as pid 1 of a new PID namespace with its own
// /proc, sharing /dev/shm (and inherited descriptors) with the test: a
// container that shares IPC but not pids. --kill-child takes the
// namespace's pid 1 with unshare when unshare is killed.
var unshareArgs = []string{"unshare", "--pid", "--fork", "--kill-child", "--mount-proc"}

// unshareProbe runs unshareArgs once on true, and says why it failed, or
// "" where PID namespaces may be made.
var unshareProbe = sync.OnceValue(func() string {
	out, err := exec.Command(unshareArgs[0], append(unshareArgs[1:], "true")...).CombinedOutput()
	if err != nil {
		return err.Error() + ": " + strings.TrimSpace(string(out))
	}
	return ""
})

// NeedUnshare skips the test unless this process may run a command in a
// new PID namespace with unshare(1) (it needs root).
func NeedUnshare(t testing.TB) {
	t.Helper()
	if why := unshareProbe(); why != "" {
		t.Skipf("unshare --pid is not permitted here (%s); the PID-namespace tests need root", why)
	}
}

// InPIDNamespace makes cmd, not yet started, run as pid 1 of a new PID
// namespace under unshare(1), which then executes cmd's program with cmd's
// arguments, and returns cmd. Killing the started cmd kills unshare, and
// the helper with it. It skips the test where that is not permitted (see
// [NeedUnshare]).
func InPIDNamespace(t testing.TB, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	NeedUnshare(t)
	path, err := exec.LookPath(unshareArgs[0])
	if err != nil {
		t.Skip(err)
	}
	cmd.Args = append(append(slices.Clone(unshareArgs), cmd.Path), cmd.Args[1:]...)
	cmd.Path = path
	return cmd
}
