package spawn

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// The forker thread
//
// A child is started with Pdeathsig SIGKILL so that it dies with its parent.
// But Linux sends the parent-death signal when the *thread* that forked the
// child exits, not the process (golang/go#27505), and the Go runtime ends
// threads: a goroutine that exits while locked to its thread takes the
// thread with it, killing every child it forked. So every child is forked by
// one goroutine, the forker, locked to its own OS thread for its whole life:
// Start hands it the command and waits for the result.
//
// The forker must not outlive its children's need for it, nor the program's
// goroutine-leak checks: it counts the children it started that are not yet
// reaped (live, which Start raises before handing over and reap lowers), and
// once live is zero for a whole linger period it returns, ending its thread,
// which no child then needs. The decision to exit and the start of a new
// forker are both made under mu, so a request is never sent to a forker that
// is leaving: Start raises live under mu before sending, and the forker only
// leaves when live is zero under mu.
//
// os/exec arms the death signal in the child before exec and then checks
// getppid, so a parent that died in between is caught too; Main checks again.

// selfExe is the binary a child runs: this process's own, even if the file
// was replaced or removed since.
const selfExe = "/proc/self/exe"

const linger = 50 * time.Millisecond

type forkReq struct {
	cmd  *exec.Cmd
	done chan error
}

var forker struct {
	mu      sync.Mutex
	running bool
	live    int // children started (or being started) by the forker and not yet reaped
	reqs    chan forkReq
}

func init() { forker.reqs = make(chan forkReq) }

// startCmd starts cmd on the forker thread.
func startCmd(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	forker.mu.Lock()
	forker.live++
	if !forker.running {
		forker.running = true
		go forkLoop()
	}
	forker.mu.Unlock()
	req := forkReq{cmd: cmd, done: make(chan error, 1)}
	forker.reqs <- req
	err := <-req.done
	if err != nil {
		released()
	}
	return err
}

// released records that a child started by startCmd has been reaped.
func released() {
	forker.mu.Lock()
	forker.live--
	forker.mu.Unlock()
}

func forkLoop() {
	// Never unlocked: the thread ends with this goroutine, and the goroutine
	// ends only when no child it forked is alive.
	runtime.LockOSThread()
	t := time.NewTimer(linger)
	defer t.Stop()
	for {
		select {
		case r := <-forker.reqs:
			r.done <- r.cmd.Start()
		case <-t.C:
			forker.mu.Lock()
			if forker.live == 0 {
				forker.running = false
				forker.mu.Unlock()
				return
			}
			forker.mu.Unlock()
		}
		t.Reset(linger)
	}
}
