//go:build linux

package spawn

import (
	"bytes"
	"encoding/gob"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestBadInheritedDescriptors starts children by hand whose descriptors are
// not what the variable announces (a missing handoff file, so that its
// number names whatever the child's runtime opened there; a pipe for a
// file; a file for a pipe): each fails its setup, saying which descriptor
// is wrong, and never runs the function.
func TestBadInheritedDescriptors(t *testing.T) {
	regular, err := os.CreateTemp(t.TempDir(), "notapipe")
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	cases := []struct {
		name   string
		nfiles int
		extra  func(argR, statW *os.File) []*os.File
		want   string // in the error
		status bool   // reported on the status pipe (else only stderr)
	}{
		{"missing file", 1, func(a, s *os.File) []*os.File { return []*os.File{nil, a, s} }, "inherited file 0 (descriptor 3)", true},
		{"pipe for file", 1, func(a, s *os.File) []*os.File { return []*os.File{pr, a, s} }, "inherited file 0 (descriptor 3) is a pipe, not a regular file", true},
		{"file for argument", 1, func(a, s *os.File) []*os.File { return []*os.File{regular, regular, s} }, "argument pipe (descriptor 4) is a regular file, not a pipe", true},
		{"file for status", 0, func(a, s *os.File) []*os.File { return []*os.File{a, regular} }, "status pipe (descriptor 4) is a regular file, not a pipe", false},
		{"missing status", 1, func(a, s *os.File) []*os.File { return []*os.File{regular, a} }, "status pipe (descriptor 5)", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			argR, argW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer argW.Close()
			statR, statW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer statR.Close()
			var stderr bytes.Buffer
			cmd := &exec.Cmd{
				Path:       selfExe,
				Args:       []string{os.Args[0]},
				Env:        childEnv(nil, make([]int, c.nfiles), "nop"),
				Stderr:     &stderr,
				ExtraFiles: c.extra(argR, statW),
			}
			err = cmd.Start()
			argR.Close()
			statW.Close()
			if err != nil {
				t.Fatal(err)
			}
			// Feed a valid argument, in case the child gets that far.
			var buf bytes.Buffer
			enc := gob.NewEncoder(&buf)
			enc.Encode(lookup("nop").typ)
			enc.Encode(wireArg[struct{}]{})
			argW.Write(buf.Bytes())
			argW.Close()
			raw, _ := io.ReadAll(statR)
			werr := cmd.Wait()
			if cmd.ProcessState.ExitCode() != exitSetup {
				t.Fatalf("exit = %v, stderr %q; want code %d", werr, stderr.String(), exitSetup)
			}
			st, ok, perr := parseStatus(raw)
			if perr != nil {
				t.Fatal(perr)
			}
			msg := stderr.String()
			if c.status {
				if !ok || st.kind != statusArgument {
					t.Fatalf("status = %+v, %v; stderr %q", st, ok, msg)
				}
				msg = st.msg
			}
			if !strings.Contains(msg, c.want) {
				t.Fatalf("error %q does not say %q", msg, c.want)
			}
		})
	}
}
