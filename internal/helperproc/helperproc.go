//go:build linux

// Package helperproc lets a test binary re-run itself as a helper process,
// the way os/exec's tests do: a test registers named functions, calls [Main]
// first thing in TestMain, and makes helpers' commands with [Command]. It
// runs them with their stdout read line by line ([Start], [Proc.Expect]),
// in a PID namespace of their own ([InPIDNamespace]), and kills and reaps
// them ([Kill]).
package helperproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/ipckit/ipckit/internal/shmfile"
)

const envName = "IPCKIT_TEST_HELPER"

var funcs = map[string]func(args []string) error{}

// Register names f as a helper. Call it at package level or in TestMain,
// before [Main].
func Register(name string, f func(args []string) error) {
	if _, dup := funcs[name]; dup {
		panic("helperproc: helper " + name + " registered twice")
	}
	funcs[name] = f
}

// IsHelper reports whether this process was started by [Command].
func IsHelper() bool { return os.Getenv(envName) != "" }

// Main runs the helper this process was started for, if any, and exits: 0 if
// it returned nil, 1 after printing its error otherwise. In the test process
// itself it returns at once.
func Main() {
	name := os.Getenv(envName)
	if name == "" {
		return
	}
	f, ok := funcs[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "helperproc: no helper named %q\n", name)
		os.Exit(2)
	}
	if err := f(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Command returns a command that runs the registered helper name with args
// in a new copy of the test binary. Its stderr goes to the test's stderr; it
// is killed if the test process dies, and at the end of the test if it is
// still running.
func Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), envName+"="+name)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t.Cleanup(func() {
		if cmd.Process != nil && cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

// namePrefix starts the name of every named segment a test makes, so that
// [Run] can find what the suite left in /dev/shm.
var namePrefix = fmt.Sprintf("test-%d-", os.Getpid())

var nameSeq atomic.Int64

// Name returns a segment name unique to this test process.
func Name(t testing.TB) string {
	return fmt.Sprintf("%s%d", namePrefix, nameSeq.Add(1))
}

// Run is a whole TestMain: it runs a helper if this process is one, else the
// tests, then fails the suite if any goroutine leaked or any file the suite
// named with [Name] is left in /dev/shm.
func Run(m *testing.M) {
	Main()
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "leaked goroutines: %v\n", err)
			code = 1
		}
		left, _ := filepath.Glob(filepath.Join(shmfile.Dir, "*"+namePrefix+"*"))
		if len(left) > 0 {
			fmt.Fprintf(os.Stderr, "the suite left files in %s: %v\n", shmfile.Dir, left)
			for _, f := range left {
				os.Remove(f)
			}
			code = 1
		}
	}
	os.Exit(code)
}

// NoExitSleep makes cmd, a helper not yet started, skip the race runtime's
// one-second sleep at a successful exit (GORACE atexit_sleep_ms, kept
// after any GORACE options of the test's), which would otherwise add a
// second to every helper of a -race run. Binaries built without -race
// ignore it.
func NoExitSleep(cmd *exec.Cmd) {
	cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}
