// Command ipcs shows every ipckit object on this machine and who holds it,
// and cleans up what nobody holds, named after the System V tool.
//
// Usage:
//
//	ipcs [ls] [-json] [PATTERN...]    every object: named segments, anonymous ones (memfds)
//	ipcs inspect [-json] NAME|PID:FD  one object's own state (a queue's depth and locks, ...)
//	ipcs watch [-n N] [-json] NAME|PID:FD   its state and rates, every second
//	ipcs gc [-n] [PATTERN...]         remove the named segments nobody can use any more
//	ipcs rm [-f] NAME                 remove one named segment
//
// A PATTERN is a shell pattern (path.Match) for names, or for PID:FD of an
// anonymous segment. ipcs only reads what it inspects: it maps segments
// read-only, takes none of their locks and claims no liveness token, so it
// can look at a queue in use, or at a corrupt file, without changing
// either. See the README's "Inspecting and cleaning up: ipcs".
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // a command failed, or gc could not remove a segment
	exitUsage = 2
)

// errUsage marks a command line ipcs cannot run.
var errUsage = errors.New("usage")

// command is one of ipcs's verbs.
type command struct {
	name, args, about string
	run               func(c *cli, args []string) error
}

var commands = []command{
	{"ls", "[-json] [PATTERN...]", "list every ipckit object the user can see (the default)", (*cli).ls},
	{"inspect", "[-json] NAME|PID:FD", "print one object's own state", (*cli).inspect},
	{"watch", "[-n N] [-interval D] [-json] NAME|PID:FD", "print an object's state and rates every second", (*cli).watch},
	{"gc", "[-n] [PATTERN...]", "remove the named segments that are safe to remove", (*cli).gc},
	{"rm", "[-f] NAME", "remove one named segment", (*cli).rm},
}

// cli is one run of ipcs: where it writes.
type cli struct {
	stdout, stderr io.Writer
}

// run runs ipcs with args (without the program name) and returns its exit
// code.
func run(args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	name, named := "ls", false
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args, named = args[0], args[1:], true
	}
	// "ipcs -h" asks for the commands, not for ls's flags ("ipcs ls -h").
	if name == "help" || !named && len(args) == 1 && slices.Contains([]string{"-h", "-help", "--help"}, args[0]) {
		c.usage(stdout)
		return exitOK
	}
	for _, cmd := range commands {
		if cmd.name != name {
			continue
		}
		err := cmd.run(c, args)
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "ipcs %s: %v\nusage: ipcs %s %s\n", name, err, name, cmd.args)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "ipcs %s: %v\n", name, err)
			return exitError
		}
	}
	fmt.Fprintf(stderr, "ipcs: no command %q\n", name)
	c.usage(stderr)
	return exitUsage
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ipcs COMMAND [ARGS]")
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-8s %-40s %s\n", cmd.name, cmd.args, cmd.about)
	}
}

// flags returns a flag set for the command name whose errors go to c's
// stderr and come back as errors.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("ipcs "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	return fs
}

// parse parses args with fs; a bad flag is a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}
