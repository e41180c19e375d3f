//go:build linux

package spawn_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// Idle cost
//
// A pool that has nothing to do must cost (nearly) nothing: no process of
// it may wake up on a timer. The tests below measure processes from
// outside, through /proc, over a stretch of idle time:
//
//   - CPU time: utime+stime of /proc/<pid>/stat (clock ticks, what top
//     and ps show), and the sum over its threads of the first field of
//     /proc/<pid>/task/<tid>/schedstat (nanoseconds on a CPU: precise
//     enough for a few milliseconds);
//   - wake-ups: the sum over its threads of voluntary_ctxt_switches in
//     /proc/<pid>/task/<tid>/status. A thread switches out voluntarily
//     each time it blocks, so an idle process's count grows by one for
//     each wake-up. The count does not depend on how fast the machine is
//     or how loaded: a CPU hog beside the test delays a wake-up, it does
//     not add one (preemptions are counted apart, as nonvoluntary).
//   - own wake-ups: the same without the Go runtime's sysmon thread (the
//     first thread the runtime starts, so the one whose tid follows the
//     pid). sysmon only reacts to the other threads: woken when a
//     goroutine comes back from a blocking system call, it polls, between
//     20 us and 10 ms apart, until it can take the call's P back, and
//     that number swings from process to process and from run to run
//     (from 3 to 30 polls for each 100 ms sleep of a blocked queue Get).
//     The other threads wake for what the program does: a timer, a
//     system call that times out, a hand-off between threads.
//
// The pool under test belongs to a child (idlePool), not to the test
// binary, so that nothing of the testing package or of other tests is
// counted; the child blocks reading its stdin until the test closes it.

// idleArg is idlePool's argument: Pids receives the workers' pids and,
// last, a 1 in Pids[idleReady].
type idleArg struct {
	Pids *shm.Int64Array
}

const (
	idleWorkers = 2
	idleReady   = idleWorkers // the slot of the ready flag in idleArg.Pids
)

var (
	// idlePool starts a Pool of idleWorkers workers, runs one call so
	// that every worker is initialized, publishes the pids and sits idle
	// until its stdin ends; then it closes the pool.
	idlePool = spawn.Register("idle-pool", func(ctx context.Context, a idleArg) error {
		defer a.Pids.Close()
		p, err := spawn.NewPool(ctx, sq, &spawn.PoolOptions{Workers: idleWorkers, ChunkSize: 1})
		if err != nil {
			return err
		}
		defer p.Close()
		if _, err := p.Map(ctx, ints(4*idleWorkers)); err != nil {
			return err
		}
		pids := p.Pids()
		if len(pids) != idleWorkers {
			return fmt.Errorf("pool has workers %v, want %d", pids, idleWorkers)
		}
		for i, pid := range pids {
			a.Pids.Store(i, int64(pid))
		}
		a.Pids.Store(idleReady, 1)
		io.Copy(io.Discard, os.Stdin)
		return p.Shutdown(ctx)
	})

	// idleGet signals ready and waits in Get on an empty queue, until the
	// test shuts the queue down.
	idleGet = spawn.Register("idle-get", func(ctx context.Context, a idleGetArg) error {
		defer a.Q.Close()
		defer a.Ready.Close()
		a.Ready.Store(1)
		if _, err := a.Q.Get(context.Background()); !errors.Is(err, io.EOF) {
			return fmt.Errorf("Get = %v, want io.EOF", err)
		}
		return nil
	})
)

type idleGetArg struct {
	Q     *ipcqueue.Queue
	Ready *shm.Int64
}

// procSample is what /proc says of one process at one moment.
type procSample struct {
	ticks  int64         // utime+stime, in clock ticks (1/100 s)
	onCPU  time.Duration // sum of its threads' schedstat run time
	wakeup int64         // sum of its threads' voluntary context switches
	sysmon int64         // those of its sysmon thread
}

// pidMax is the kernel's pid_max: tids wrap around at it.
var pidMax = func() int {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return 1 << 22
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 1 << 22
	}
	return n
}()

// sampleProc reads pid's counters.
func sampleProc(pid int) (procSample, error) {
	var s procSample
	dir := "/proc/" + strconv.Itoa(pid)
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+1:])
	if i < 0 || len(f) < 13 {
		return s, fmt.Errorf("%s/stat: %q", dir, b)
	}
	// After the command: state(3) ... utime(14) stime(15), so f[11], f[12].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return s, err
	}
	s.ticks = ut + st
	tasks, err := os.ReadDir(dir + "/task")
	if err != nil {
		return s, err
	}
	// sysmon: the thread started right after the main thread, whose tid is
	// the pid.
	sysmon, first := -1, pidMax
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if after := (tid - pid + pidMax) % pidMax; err == nil && after > 0 && after < first {
			sysmon, first = tid, after
		}
	}
	for _, t := range tasks {
		td := filepath.Join(dir, "task", t.Name())
		if b, err := os.ReadFile(td + "/schedstat"); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				s.onCPU += time.Duration(ns)
			}
		}
		b, err := os.ReadFile(td + "/status")
		if err != nil {
			continue // the thread ended meanwhile
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				s.wakeup += n
				if t.Name() == strconv.Itoa(sysmon) {
					s.sysmon += n
				}
			}
		}
	}
	return s, nil
}

// idleCost is one process's cost over an idle stretch.
type idleCost struct {
	name    string
	ticksMs int64         // utime+stime, ms
	onCPU   time.Duration // schedstat
	wakeups int64         // every thread's
	own     int64         // without sysmon's
}

func (c idleCost) String() string {
	return fmt.Sprintf("%-12s stat %4d ms  schedstat %7.2f ms  wake-ups %5d, own %4d", c.name, c.ticksMs,
		float64(c.onCPU)/float64(time.Millisecond), c.wakeups, c.own)
}

// measureIdle samples the named processes at the start and the end of d.
func measureIdle(t *testing.T, d time.Duration, pids map[string]int) []idleCost {
	t.Helper()
	before := map[string]procSample{}
	for name, pid := range pids {
		s, err := sampleProc(pid)
		if err != nil {
			t.Fatalf("%s (pid %d): %v", name, pid, err)
		}
		before[name] = s
	}
	time.Sleep(d)
	var out []idleCost
	for name, pid := range pids {
		s, err := sampleProc(pid)
		if err != nil {
			t.Fatalf("%s (pid %d): %v", name, pid, err)
		}
		b := before[name]
		out = append(out, idleCost{name: name, ticksMs: (s.ticks - b.ticks) * 10, onCPU: s.onCPU - b.onCPU,
			wakeups: s.wakeup - b.wakeup, own: s.wakeup - s.sysmon - (b.wakeup - b.sysmon)})
	}
	slices.SortFunc(out, func(a, b idleCost) int { return strings.Compare(a.name, b.name) })
	return out
}

// startIdlePool starts idlePool and returns the pids of it and of its
// workers, once they are idle. The pool is shut down at the end of the
// test.
func startIdlePool(t *testing.T) map[string]int {
	t.Helper()
	pids, err := shm.NewArray[int64](idleWorkers + 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pids.Close() })
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.Context(): it ends before the cleanup, which shuts the pool
	// down.
	proc, err := spawn.Start(context.Background(), idlePool, idleArg{Pids: pids}, &spawn.Options{Stdin: r})
	r.Close()
	if err != nil {
		w.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Close()
		if err := proc.Wait(); err != nil {
			t.Errorf("idle pool: %v", err)
		}
	})
	for pids.Load(idleReady) == 0 {
		select {
		case <-proc.Done():
			t.Fatalf("the idle pool ended: %v", proc.Wait())
		case <-time.After(5 * time.Millisecond):
		}
	}
	out := map[string]int{"pool parent": proc.Pid}
	for i := range idleWorkers {
		out[fmt.Sprintf("worker %d", i)] = int(pids.Load(i))
	}
	return out
}

// startIdleGet starts idleGet and returns its pid once it waits.
func startIdleGet(t *testing.T) int {
	t.Helper()
	q, err := ipcqueue.New(64<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	ready, err := shm.NewInt64()
	if err != nil {
		q.Close()
		t.Fatal(err)
	}
	defer ready.Close()
	proc, err := spawn.Start(context.Background(), idleGet, idleGetArg{Q: q, Ready: ready}, nil)
	if err != nil {
		q.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		q.Shutdown()
		q.Close()
		if err := proc.Wait(); err != nil {
			t.Errorf("idle Get: %v", err)
		}
	})
	for ready.Load() == 0 {
		select {
		case <-proc.Done():
			t.Fatalf("the idle Get ended: %v", proc.Wait())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return proc.Pid
}

// idleSettle lets start-up work (the runtime's, the queues' spin
// budgets decaying) finish before an idle stretch is measured.
const idleSettle = 500 * time.Millisecond

// TestIdleCost: an idle pool's processes do not wake up on timers of
// their own. Over 2 s of idle, the pool's owner and each worker may wake
// (own wake-ups: sysmon's left out, see above) at most 1.5 times as often
// as a child blocked in a queue Get, plus 10 a second. Each of them is
// itself blocked in one Get (the owner's result reader, a worker's task
// queue), so what a Get costs is the reference, measured in the same
// stretch, and anything beyond it is the pool's own. The test counts
// wake-ups, not CPU time, so that a slow or loaded machine cannot fail
// it, nor a fast one hide a regression.
//
// Measured (own wake-ups): since ipcqueue's waits block without a
// timeout (833de05), none at all, in the blocked Get, the owner and the
// workers alike, so the bound is the slack. The pool's own timers, as
// they were before, made the owner wake 60 to 77 times a second (the
// forker thread's 50 ms timer, handed to its locked thread, and the
// result reader's cancellable wait). When ipcqueue's wait still slept
// 100 ms at a time, a blocked Get woke about 20 times a second, the
// workers the same, the owner half that; hence the reference, which
// keeps the test meaningful if a wait ever polls again. BENCHMARKS.md,
// "Idle cost", has the figures.
func TestIdleCost(t *testing.T) {
	const (
		d     = 2 * time.Second
		slack = 10 // wake-ups a second: the runtime's own background work
	)
	pids := startIdlePool(t)
	pids["blocked Get"] = startIdleGet(t)
	time.Sleep(idleSettle)
	costs := measureIdle(t, d, pids)
	var ref int64
	for _, c := range costs {
		t.Log(c)
		if c.name == "blocked Get" {
			ref = c.own
		}
	}
	limit := 3*ref/2 + slack*int64(d/time.Second)
	for _, c := range costs {
		if c.name != "blocked Get" && c.own > limit {
			t.Errorf("%s woke %d times in %v of idle (sysmon's left out), want at most %d (1.5 × a blocked Get's %d, + %d/s)",
				c.name, c.own, d, limit, ref, slack)
		}
	}
}

// TestIdleFigures prints the idle figures of BENCHMARKS.md ("Idle cost"):
// an idle Pool(2)'s owner and workers, and a child blocked in Get on an
// empty queue, over IPCKIT_IDLE_FIGURES (a duration, e.g. 5s) of idle.
// Run: IPCKIT_IDLE_FIGURES=5s go test -run TestIdleFigures -v ./spawn/
func TestIdleFigures(t *testing.T) {
	v := os.Getenv("IPCKIT_IDLE_FIGURES")
	if v == "" {
		t.Skip("set IPCKIT_IDLE_FIGURES=5s to measure")
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatal(err)
	}
	pids := startIdlePool(t)
	pids["blocked Get"] = startIdleGet(t)
	fmt.Fprintln(os.Stderr, "idle pids:", pids)
	time.Sleep(idleSettle)
	for _, c := range measureIdle(t, d, pids) {
		t.Logf("%v (%.1f and %.1f a second)", c, float64(c.wakeups)/d.Seconds(), float64(c.own)/d.Seconds())
	}
}
