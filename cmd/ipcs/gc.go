package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ipckit/ipckit/shm"
)

// Garbage collection
//
// gc removes a named segment only when nothing can still use it:
//
//   - its header is valid (a file that is no segment, or a corrupt one, is
//     kept: its owner decides, with rm);
//   - its creator is dead: the header's pid runs no more, or runs another
//     process (its start time differs);
//   - no process holds it open or maps it, among those ipcs can read;
//   - no process ipcs cannot read could have it open (see procScan.hidden);
//   - no holder it records (a lock's, a permit's, a place at a barrier) is
//     alive, or of unknown liveness.
//
// Anonymous segments are never gc's business: the kernel frees them with
// their last holder. gc looks at everything afresh when it runs, and
// removes one name with one unlink: a process that opens a segment between
// the look and the unlink keeps its mapping (as after any shm.Remove).

// verdict is gc's decision on one segment.
type verdict struct {
	remove bool
	why    string
}

// judge decides whether o is safe to remove.
func judge(o *object) verdict {
	switch {
	case o.err != nil:
		return verdict{false, "not a segment ipcs can read (" + o.errorText() + "); rm removes it"}
	case o.Creator == "alive":
		return verdict{false, fmt.Sprintf("its creator, pid %d, is alive", o.CreatorPid)}
	case len(o.Pids) > 0:
		return verdict{false, "in use by pid " + pidList(o.Pids, nil)}
	case len(o.Unreadable) > 0:
		return verdict{false, "pid " + pidList(o.Unreadable, nil) + " could use it, and ipcs may not read them"}
	}
	if o.info.Report != nil {
		for _, h := range o.info.Report.Holders() {
			if h.State != "dead" {
				return verdict{false, "held by a process that is " + h.State + ": token " + h.String()}
			}
		}
	}
	return verdict{true, fmt.Sprintf("its creator, pid %d, is dead and nobody uses it", o.CreatorPid)}
}

func (c *cli) gc(args []string) error {
	fs := c.flags("gc")
	dry := fs.Bool("n", false, "print what would be removed, remove nothing")
	if err := parse(fs, args); err != nil {
		return err
	}
	scan, err := scanProcs()
	if err != nil {
		return err
	}
	objs, err := collect(scan, fs.Args(), true)
	if err != nil {
		return err
	}
	var errs []error
	for _, o := range objs {
		v := judge(o)
		switch {
		case !v.remove:
			fmt.Fprintf(c.stdout, "kept %s: %s\n", o.Name, v.why)
		case *dry:
			fmt.Fprintf(c.stdout, "would remove %s: %s\n", o.Name, v.why)
		default:
			if err := shm.Remove(o.Name); err != nil {
				errs = append(errs, err)
				fmt.Fprintf(c.stdout, "failed to remove %s: %v\n", o.Name, err)
				continue
			}
			fmt.Fprintf(c.stdout, "removed %s: %s\n", o.Name, v.why)
		}
	}
	return errors.Join(errs...)
}

func (c *cli) rm(args []string) error {
	fs := c.flags("rm")
	force := fs.Bool("f", false, "remove it even while processes use it")
	if err := parse(fs, args); err != nil {
		return err
	}
	t, err := parseTarget(fs.Args())
	if err != nil {
		return err
	}
	if t.pid != 0 {
		return fmt.Errorf("%w: %d:%d is an anonymous segment, which has no name to remove: it goes with its last holder", errUsage, t.pid, t.fd)
	}
	scan, err := scanProcs()
	if err != nil {
		return err
	}
	o := t.inspect(scan)
	if !*force {
		var why []string
		if len(o.Pids) > 0 {
			why = append(why, "in use by pid "+pidList(o.Pids, nil))
		}
		if len(o.Unreadable) > 0 {
			why = append(why, "pid "+pidList(o.Unreadable, nil)+" could use it, and ipcs may not read them")
		}
		if len(why) > 0 {
			return fmt.Errorf("%s: %s; -f removes it anyway", t.name, strings.Join(why, "; "))
		}
	}
	if err := shm.Remove(t.name); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "removed %s\n", t.name)
	return nil
}
