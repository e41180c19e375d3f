//go:build linux

package semaphore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipckit/ipckit/shm"
)

func init() {
	// chaos: run critical sections under the Mutex, or the Semaphore of
	// one permit, forever; see TestChaos.
	registerHold("chaos", func(a holdArgs) error {
		return chaosWorker(a)
	})
}

// TestChaos kills holders with SIGKILL, hundreds of times, while other
// processes take the lock; exclusion is never broken. Each worker, once
// inside, sets a shared occupant word with a compare-and-swap from 0 to its
// pid, stays inside a while (up to 100 us), and clears it on the way out;
// finding it set by anyone is a broken exclusion, unless the occupant's
// process is gone (read from /proc, not from internal/liveness) and, for
// the Mutex, the lock told this worker that it took over from a dead
// holder (ErrOwnerDead); a Semaphore's reclaimed permit may go to a waiter
// other than the one told. The dead one's occupant word is then replaced. The test kills the occupant three
// times out of four (a holder, inside or just out), and a worker at random
// otherwise (a waiter, asleep or spinning, or one starting), and starts a
// new worker for each. It fails if the kills took the lock from its holder
// too rarely to prove anything.
func TestChaos(t *testing.T) {
	kills := 300
	switch {
	case testing.Short():
		kills = 60
	case raceEnabled:
		// The race detector cannot see into other processes, and its
		// binaries start slowly (a kill waits for a worker that runs).
		kills = 30
	}
	for _, kind := range []string{"Mutex", "Semaphore"} {
		t.Run(kind, func(t *testing.T) { chaos(t, kind, kills) })
	}
}

func chaos(t *testing.T, kind string, kills int) {
	var a holdArgs
	var err error
	if a.Int, err = shm.NewInt64(); err != nil { // the occupant's pid
		t.Fatal(err)
	}
	defer a.Int.Close()
	if a.Told, err = shm.NewInt64(); err != nil { // ErrOwnerDead, counted
		t.Fatal(err)
	}
	defer a.Told.Close()
	switch kind {
	case "Mutex":
		a.M = newMutex(t)
	case "Semaphore":
		a.S = newSemaphore(t, 1, &SemaphoreOptions{Bounded: true})
	}
	const workers = 3
	cmds := make([]*exec.Cmd, workers)
	exited := make(chan error, workers+kills)
	launch := func(i int) {
		cmd := start(t, "chaos", a)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
		go func() {
			err := cmd.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == -1 {
				err = nil // killed: the point
			}
			if err != nil {
				err = fmt.Errorf("%w: %s", err, stderr.String())
			}
			exited <- err
		}()
	}
	for i := range workers {
		launch(i)
	}
	begin := time.Now()
	for range kills {
		// The occupant, if it is one of the workers now running.
		victim := rand.N(workers)
		if rand.N(4) != 0 {
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
				occ := int(a.Int.Load())
				if k := slices.IndexFunc(cmds, func(c *exec.Cmd) bool { return c.Process.Pid == occ }); k >= 0 {
					victim = k
					break
				}
				time.Sleep(20 * time.Microsecond)
			}
		}
		cmds[victim].Process.Kill()
		launch(victim)
		time.Sleep(time.Duration(rand.N(2000)) * time.Microsecond)
	}
	for _, c := range cmds {
		c.Process.Kill()
	}
	for range workers + kills {
		if err := <-exited; err != nil {
			t.Error(err)
		}
	}
	// Every worker is dead now: the lock comes back.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	took := int(a.Told.Load())
	switch kind {
	case "Mutex":
		err = a.M.LockContext(ctx)
		if err == nil || errors.Is(err, ErrOwnerDead) {
			a.M.MarkConsistent()
			a.M.Unlock()
		}
	case "Semaphore":
		err = a.S.Acquire(ctx)
		took = a.S.Reclaimed()
	}
	if err != nil && !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("after the chaos: %v", err)
	}
	t.Logf("%d workers SIGKILLed in %v; %d times the lock or permit was taken over from a dead holder; the last lock: %v",
		kills, time.Since(begin), took, err)
	if took < kills/10 {
		t.Errorf("only %d takeovers in %d kills: the kills did not hit holders", took, kills)
	}
}

// chaosWorker is one worker of TestChaos.
func chaosWorker(a holdArgs) error {
	me := int64(os.Getpid())
	ctx := context.Background()
	for {
		var err error
		if a.M != nil {
			err = a.M.Lock()
		} else {
			err = a.S.Acquire(ctx)
		}
		told := errors.Is(err, ErrOwnerDead)
		if err != nil && !told {
			return err
		}
		if told {
			a.Told.Add(1)
		}
		if !a.Int.CompareAndSwap(0, me) {
			occ := a.Int.Load()
			switch {
			case (told || a.S != nil) && gone(occ):
				a.Int.Store(me) // the dead holder's: replace it
			default:
				return fmt.Errorf("broken exclusion: inside, found %d inside too (told %v)", occ, told)
			}
		}
		if told && a.M != nil {
			a.M.MarkConsistent()
		}
		// Stay inside a while: a broken lock would show here.
		for stay, t0 := time.Duration(rand.N(100))*time.Microsecond, time.Now(); time.Since(t0) < stay; {
			if a.Int.Load() != me {
				return fmt.Errorf("broken exclusion: the occupant became %d", a.Int.Load())
			}
		}
		if !a.Int.CompareAndSwap(me, 0) {
			return fmt.Errorf("broken exclusion: on the way out the occupant is %d", a.Int.Load())
		}
		if a.M != nil {
			err = a.M.Unlock()
		} else {
			err = a.S.Release()
		}
		if err != nil {
			return err
		}
	}
}

// gone reports whether process pid has exited or is exiting, read from
// /proc, independently of internal/liveness: it is not there, or a
// zombie, or its flags (field 9 of /proc/PID/stat) have PF_EXITING, which
// the kernel sets before it closes the process's files (and so drops its
// liveness token's lock): a process that has it never runs again.
func gone(pid int64) bool {
	const pfExiting = 0x4
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 7 {
		return false
	}
	flags, _ := strconv.ParseUint(f[6], 10, 64)
	return f[0] == "Z" || f[0] == "X" || flags&pfExiting != 0
}
