package spawn

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/internal/shmfile"
)

// Child start-up
//
// The parent starts the child with IPCKIT_SPAWN=<parent pid>:<ids>:<name> in
// its environment, where ids lists, comma-separated, the parent's descriptor
// numbers of the n files it passes (internal/handoff; empty for none), and
// with these descriptors:
//
//	3 .. 3+n-1   files of anonymous shared objects in the argument (handoff)
//	3+n          argument pipe (read end): gob(procInfo), gob(type name),
//	             gob(wireArg[A])
//	3+n+1        status pipe (write end), see status.go
//
// Main recognises a child by the variable alone and does nothing else in a
// parent, so the cost a child adds to the program's own start-up is: parse
// the variable, check the descriptors (each must be open and of its kind:
// regular files or memfds for handoff, pipes for the argument and status;
// anything else fails the setup), mark them close-on-exec, close every
// higher descriptor that is not close-on-exec (the parent's stray
// inheritable descriptors), give handoff its table of the parent's
// descriptor numbers and the files they arrived as, decode the argument,
// run, and write the status. The variable is removed before the function
// runs, so the function's own children are not mistaken for spawn children
// of the wrong kind; the descriptors are close-on-exec so nothing the
// function starts inherits them (a grandchild holding the status pipe would
// delay the parent's Wait).

const envVar = "IPCKIT_SPAWN"

// Main must be called first in main, and in TestMain of any test that
// spawns. In a child started by [Start] it runs the registered function and
// exits the process; in any other process it returns at once. Main is safe to
// call more than once.
func Main() {
	mainCalled.Store(true)
	v, ok := os.LookupEnv(envVar)
	if !ok {
		return
	}
	os.Exit(runChild(v))
}

// childSetup is parsed from the environment variable.
type childSetup struct {
	ppid int
	ids  []int // the parent's descriptor numbers of the inherited files
	name string
}

func parseEnv(v string) (childSetup, error) {
	bad := fmt.Errorf("spawn: malformed %s=%q", envVar, v)
	parts := strings.SplitN(v, ":", 3)
	if len(parts) != 3 {
		return childSetup{}, bad
	}
	ppid, err := strconv.Atoi(parts[0])
	if err != nil || ppid <= 0 {
		return childSetup{}, bad
	}
	var ids []int
	if parts[1] != "" {
		fds := strings.Split(parts[1], ",")
		if len(fds) > maxFiles {
			return childSetup{}, bad
		}
		for _, s := range fds {
			id, err := strconv.Atoi(s)
			if err != nil || id < 0 {
				return childSetup{}, bad
			}
			ids = append(ids, id)
		}
	}
	return childSetup{ppid: ppid, ids: ids, name: parts[2]}, nil
}

// maxFiles bounds the inherited descriptors a child accepts.
const maxFiles = 4096

func runChild(v string) int {
	os.Unsetenv(envVar)
	cs, err := parseEnv(v)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitSetup
	}
	// The parent may have died between fork and the parent-death signal
	// being armed; os/exec checks getppid after arming it, and so do we, in
	// case this process was started by other means.
	if os.Getppid() != cs.ppid {
		return exitSetup
	}
	// The status pipe first, so that later setup failures reach the
	// parent's Wait, not only stderr.
	first, nfiles := handoff.FirstFD, len(cs.ids)
	statFD := first + nfiles + 1
	if err := checkFD(statFD, "status pipe", true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitSetup
	}
	statFile, err := shmfile.Inherit(statFD, "spawn-status")
	if err != nil {
		fmt.Fprintln(os.Stderr, "spawn:", err)
		return exitSetup
	}
	setupFailed := func(err error) int {
		statFile.Write(status{kind: statusArgument, msg: err.Error()}.marshal())
		statFile.Close()
		return exitSetup
	}
	for i := range nfiles {
		if err := checkFD(first+i, "inherited file "+strconv.Itoa(i), false); err != nil {
			return setupFailed(err)
		}
	}
	if err := checkFD(first+nfiles, "argument pipe", true); err != nil {
		return setupFailed(err)
	}
	files := make([]*os.File, nfiles)
	for i := range files {
		if files[i], err = shmfile.Inherit(first+i, "spawn-inherited"); err != nil {
			return setupFailed(err)
		}
	}
	argFile, err := shmfile.Inherit(first+nfiles, "spawn-arg")
	if err != nil {
		return setupFailed(err)
	}
	// Everything above ours that the parent leaked to us goes now, before
	// any user code runs (or starts children of its own).
	if err := closeStray(statFD + 1); err != nil {
		return setupFailed(err)
	}
	handoff.SetInherited(cs.ids, files)

	report := func(st status, code int) int {
		argFile.Close()
		if st.kind != 0 {
			statFile.Write(st.marshal())
		}
		statFile.Close()
		return code
	}
	code := report(call(cs.name, argFile, report))
	if code == exitBySIGTERM {
		dieOfSIGTERM()
	}
	return code
}

// call decodes the argument and runs the function registered under name. If
// the function calls runtime.Goexit, call reports it and exits the process.
func call(name string, argFile *os.File, report func(status, int) int) (st status, code int) {
	e := lookup(name)
	if e == nil {
		return status{kind: statusUnregistered}, exitSetup
	}
	dec := gob.NewDecoder(bufio.NewReaderSize(argFile, 64<<10))
	var info procInfo
	if err := dec.Decode(&info); err != nil {
		return status{kind: statusArgument, msg: err.Error()}, exitSetup
	}
	selfIdent = info.Ident
	self.Store(&ProcessInfo{Name: info.Name, Pid: os.Getpid(), ParentPid: os.Getppid()})
	var typ string
	if err := dec.Decode(&typ); err != nil {
		return status{kind: statusArgument, msg: err.Error()}, exitSetup
	}
	if typ != e.typ {
		return status{kind: statusMismatch, msg: fmt.Sprintf("parent sent %s, child's %s takes %s", typ, name, e.typ)}, exitSetup
	}
	returned := false
	defer func() {
		if returned {
			return
		}
		if r := recover(); r != nil {
			st = status{kind: statusPanic, msg: fmt.Sprint(r), stack: string(debug.Stack())}
			code = exitPanic
			return
		}
		// runtime.Goexit: the main goroutine is ending; report and exit.
		os.Exit(report(status{kind: statusError, msg: "spawn: function called runtime.Goexit"}, exitError))
	}()
	ctx, terminated := context.Background(), func() bool { return false }
	if e.termCtx {
		var stop func()
		ctx, terminated, stop = termContext(info.Grace)
		defer stop()
	}
	err := e.run(ctx, dec)
	returned = true
	if err == nil {
		return status{}, 0
	}
	if terminated() && (errors.Is(err, context.Canceled) || errors.Is(err, ErrTerminated)) {
		return status{}, exitBySIGTERM
	}
	if ae := (*argError)(nil); errors.As(err, &ae) {
		return status{kind: statusArgument, msg: ae.Error()}, exitSetup
	}
	return status{kind: statusError, msg: err.Error(), keys: packKeys(ErrorKeys(err))}, exitError
}
