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
// While a child lives the forker blocks with no timer (a timer would wake
// the idle parent of a pool for nothing): only a request, or the reaping
// that brings live to zero (a token on idle), wakes it. Only then does it
// linger, on a timer, before it leaves. A token may be stale (live rose
// again before the forker took it): the forker then finds live above zero
// after its linger and goes back to blocking.
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
	live    int           // children started (or being started) by the forker and not yet reaped
	reqs    chan forkReq  // Start's requests
	idle    chan struct{} // a token when live drops to zero (capacity 1; sent under mu)
}

func init() {
	forker.reqs = make(chan forkReq)
	forker.idle = make(chan struct{}, 1)
}

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
	if forker.live == 0 {
		select {
		case forker.idle <- struct{}{}:
		default: // a token is there already
		}
	}
	forker.mu.Unlock()
}

func forkLoop() {
	// Never unlocked: the thread ends with this goroutine, and the goroutine
	// ends only when no child it forked is alive.
	runtime.LockOSThread()
	t := time.NewTimer(linger)
	t.Stop()
	for {
		// Children live: no timer.
		select {
		case r := <-forker.reqs:
			r.done <- r.cmd.Start()
			continue
		case <-forker.idle:
		}
		// None lives: linger, then leave if none lives still.
		t.Reset(linger)
		select {
		case r := <-forker.reqs:
			t.Stop()
			r.done <- r.cmd.Start()
			continue
		case <-t.C:
		}
		forker.mu.Lock()
		if forker.live == 0 {
			forker.running = false
			select {
			case <-forker.idle: // a stale token: the next forker must not linger for it
			default:
			}
			forker.mu.Unlock()
			return
		}
		forker.mu.Unlock()
	}
}
