//go:build linux

package helperproc

import (
	"bufio"
	"os/exec"
	"testing"
	"time"
)

// LineTimeout is how long [Proc.Line] waits for a helper's next line: far
// more than a helper takes to start and say it is ready (a race-built
// binary on a loaded machine, or under qemu-user, can take seconds), so
// that only a helper that hangs fails the test.
const LineTimeout = time.Minute

// Proc is a helper process started by [Start], whose stdout is read line
// by line. Its zero value is not usable. Its methods other than reading
// Lines are for the test's goroutine; a Proc may be copied (the copies
// share the process and its lines).
type Proc struct {
	// Cmd is the started command.
	Cmd *exec.Cmd
	// Lines carries the helper's stdout, a line at a time without its
	// newline; it is closed at EOF. A test reads it through [Proc.Line]
	// and [Proc.Expect], or itself.
	Lines <-chan string
}

// Start starts cmd (typically made by [Command]; its stdin and other
// settings already set) with its stdout piped, and reads that into
// [Proc.Lines] from another goroutine, which ends once the helper's stdout
// is closed (at its exit; [Proc.Kill] and cmd.Wait reap it). Up to 1024
// lines wait there unread before the helper is held up writing.
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	sc := bufio.NewScanner(out)
	go func() {
		defer close(lines)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return &Proc{Cmd: cmd, Lines: lines}
}

// Line returns the helper's next line. It fails the test if the helper's
// output ends first, or if it says nothing for [LineTimeout].
func (p *Proc) Line(t testing.TB) string {
	t.Helper()
	select {
	case s, ok := <-p.Lines:
		if !ok {
			t.Fatalf("helper %q exited without saying more", p.Cmd.Args)
		}
		return s
	case <-time.After(LineTimeout):
		t.Fatalf("helper %q said nothing for %v", p.Cmd.Args, LineTimeout)
	}
	return ""
}

// Expect fails the test unless the helper's next line is want (see
// [Proc.Line]).
func (p *Proc) Expect(t testing.TB, want string) {
	t.Helper()
	if s := p.Line(t); s != want {
		t.Fatalf("helper %q said %q, want %q", p.Cmd.Args, s, want)
	}
}

// Kill kills the helper with SIGKILL and reaps it (see [Kill]).
func (p *Proc) Kill() { Kill(p.Cmd) }

// Kill kills the started cmd with SIGKILL and reaps it, ignoring errors:
// the helper may have died already.
func Kill(cmd *exec.Cmd) {
	cmd.Process.Kill()
	cmd.Wait()
}
