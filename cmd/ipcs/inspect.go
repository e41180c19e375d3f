package main

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"

	"github.com/ipckit/ipckit/shm"
)

var pidFD = regexp.MustCompile(`^([0-9]+):([0-9]+)$`)

// target is what a command line names: a named segment, or PID:FD.
type target struct {
	name    string
	pid, fd int
}

func parseTarget(args []string) (target, error) {
	if len(args) != 1 {
		return target{}, fmt.Errorf("%w: want one NAME or PID:FD, got %d arguments", errUsage, len(args))
	}
	if m := pidFD.FindStringSubmatch(args[0]); m != nil {
		pid, err1 := strconv.Atoi(m[1])
		fd, err2 := strconv.Atoi(m[2])
		if err1 == nil && err2 == nil && pid > 0 {
			return target{pid: pid, fd: fd}, nil
		}
	}
	return target{name: args[0]}, nil
}

// inspect reads the target's segment and returns it as an object, with
// its report in o.info.Report.
func (t target) inspect(scan *procScan) *object {
	var info shm.Info
	var err error
	if t.pid != 0 {
		info, err = shm.InspectFD(t.pid, t.fd)
	} else {
		info, err = shm.Inspect(t.name)
	}
	o := newObject(info, err, scan, time.Now())
	o.Pid, o.FD = t.pid, t.fd
	return o
}

// inspected is what inspect -json prints: the object and its state.
type inspected struct {
	*object
	State shm.Report `json:",omitempty"`
}

func (c *cli) inspect(args []string) error {
	fs := c.flags("inspect")
	asJSON := fs.Bool("json", false, "print a JSON object")
	if err := parse(fs, args); err != nil {
		return err
	}
	t, err := parseTarget(fs.Args())
	if err != nil {
		return err
	}
	scan, err := scanProcs()
	if err != nil {
		return err
	}
	o := t.inspect(scan)
	if o.info.Ino == 0 && o.err != nil {
		return o.err // nothing there to describe
	}
	if *asJSON {
		if err := json.NewEncoder(c.stdout).Encode(inspected{o, o.info.Report}); err != nil {
			return err
		}
	} else {
		describe(c.stdout, o)
	}
	return o.err
}

// describe prints o and its state as text.
func describe(w io.Writer, o *object) {
	line := func(k, f string, a ...any) { fmt.Fprintf(w, "%-9s %s\n", k+":", fmt.Sprintf(f, a...)) }
	if o.Name != "" {
		line("name", "%s", o.Name)
	}
	line("path", "%s", o.Path)
	if o.Kind != "" {
		line("kind", "%s", o.Kind)
	}
	line("size", "%d bytes", o.Size)
	line("mode", "%s %s", o.Mode, o.Owner)
	if o.Kind != "" {
		line("creator", "pid %d, started at tick %d: %s", o.CreatorPid, o.CreatorStart, o.Creator)
	}
	line("pids", "%s", pidList(o.Pids, o.Unreadable))
	line("age", "%s", humanAge(o.AgeSeconds, o.Created))
	if o.Error != "" {
		line("error", "%s", o.errorText())
	}
	if o.info.Report != nil {
		fmt.Fprintln(w, "state:")
		render(w, o.info.Report, "  ")
	}
}
