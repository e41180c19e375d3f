package spawn

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Process identity
//
// Every child gets a name, as in Python: [Options.Name], or by default
// "Process-N", N counting the children this process has started from 1
// (pool workers "PoolWorker-N", on the same count). A child's own children
// count on from its identity, so the first child of "Process-2" is
// "Process-2:1", as in Python. The name and the identity travel first on
// the argument stream (procInfo), before the function's type name; the
// child keeps them for [CurrentProcess].

// ProcessInfo identifies a process: Python's current_process() and
// parent_process(). It is plain data.
type ProcessInfo struct {
	// Name is the name the parent gave the child ([Options.Name], or
	// "Process-N"); "MainProcess" in a process not started by spawn.
	Name string
	// Pid is the process ID.
	Pid int
	// ParentPid is the process ID of the parent that started this
	// process with spawn; 0 in a process not started by spawn.
	ParentPid int
}

// procInfo is what a child learns of itself from its parent, first on
// its argument stream.
type procInfo struct {
	Name  string
	Ident string        // the child's identity: "2", or "2:1" for a grandchild
	Grace time.Duration // Options.TermGrace, resolved
}

// defaultTermGrace is the default of Options.TermGrace.
const defaultTermGrace = time.Second

var (
	self      atomic.Pointer[ProcessInfo] // set in a child before its function runs
	selfIdent string                      // the child's identity; "" in the main process; set before the function runs
	children  atomic.Uint64               // the children started, for identities
)

// CurrentProcess returns the calling process's name and pid, and the pid of
// the parent that started it: Python's current_process(). In a child, the
// name is the one its parent gave it ([Options.Name] or "Process-N"); in
// any other process, "MainProcess".
func CurrentProcess() ProcessInfo {
	if s := self.Load(); s != nil {
		return *s
	}
	return ProcessInfo{Name: "MainProcess", Pid: os.Getpid()}
}

// nextChild returns the identity and the default name of the next child,
// with prefix ("Process", "PoolWorker").
func nextChild(prefix string) procInfo {
	id := strconv.FormatUint(children.Add(1), 10)
	if selfIdent != "" {
		id = selfIdent + ":" + id
	}
	return procInfo{Name: prefix + "-" + id, Ident: id}
}

// The running children, for ActiveChildren: added by start, removed by
// reap once the child has been reaped.
var (
	activeMu sync.Mutex
	active   = map[*Process]uint64{} // -> start order
	started  uint64
)

func addActive(p *Process) {
	activeMu.Lock()
	started++
	active[p] = started
	activeMu.Unlock()
}

func removeActive(p *Process) {
	activeMu.Lock()
	delete(active, p)
	activeMu.Unlock()
}

// ActiveChildren returns the children of this process that spawn started
// and that have not yet been reaped, oldest first, pool workers included:
// Python's active_children(). (spawn reaps every child as it exits, so,
// unlike Python's, it need not join the finished ones.) The slice is new
// and the caller's.
func ActiveChildren() []*Process {
	activeMu.Lock()
	ps := make([]*Process, 0, len(active))
	for p := range active {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *Process) int { return int(active[a] - active[b]) })
	activeMu.Unlock()
	return ps
}

// ErrTerminated is the cause (context.Cause) of a child's context when
// the child was sent SIGTERM ([Process.Terminate]).
var ErrTerminated = errors.New("spawn: terminated by SIGTERM")

// termContext returns a context that SIGTERM cancels, with cause
// ErrTerminated. After the first SIGTERM, spawn stops catching the
// signal, so a second one ends the process (unless the function catches
// it itself), and so does the end of grace (unless grace is negative).
// got reports whether SIGTERM came; stop ends the watch, and once it has
// returned the grace's end no longer kills the process.
func termContext(grace time.Duration) (ctx context.Context, got func() bool, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	done := make(chan struct{})
	var came atomic.Bool
	var mu sync.Mutex // held by the kill at the grace's end; stop takes it
	stopped := false
	go func() {
		select {
		case <-sig:
			came.Store(true)
			signal.Stop(sig)
			cancel(ErrTerminated)
		case <-done:
			return
		}
		if grace < 0 {
			return
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			mu.Lock()
			if !stopped {
				dieOfSIGTERM()
			}
			mu.Unlock()
		case <-done:
		}
	}()
	return ctx, came.Load, func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		signal.Stop(sig)
		close(done)
	}
}

// dieOfSIGTERM ends the process by SIGTERM, as if it had never caught it,
// so that the parent sees the signal, as Python's terminate() shows it.
func dieOfSIGTERM() {
	signal.Reset(syscall.SIGTERM)
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	for {
		time.Sleep(time.Second) // until the signal ends the process
	}
}
