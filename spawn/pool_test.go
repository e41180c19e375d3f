//go:build linux

package spawn_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/spawn"
)

// poolIn tells the test task what to do with X.
type poolIn struct {
	X    int
	Op   string // "", "kill", "exit", "panic", "fail", "sleep", "init", "gate"
	Path string // "gate": a FIFO the task reads to its end before it returns
}

type poolOut struct {
	Y   int
	Pid int
	S   string
}

var initValue string // set by the initializer, in the worker

var (
	sq = spawn.RegisterTask("pool-sq", func(ctx context.Context, x int) (int, error) { return x * x, nil })

	work = spawn.RegisterTask("pool-work", func(ctx context.Context, in poolIn) (poolOut, error) {
		out := poolOut{Y: in.X * in.X, Pid: os.Getpid()}
		switch in.Op {
		case "kill":
			fmt.Fprintf(os.Stderr, "task %d: killing myself\n", in.X)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		case "exit":
			fmt.Fprintf(os.Stderr, "task %d: exiting\n", in.X)
			os.Exit(7)
		case "panic":
			panic(fmt.Sprintf("boom %d", in.X))
		case "fail":
			return out, fmt.Errorf("failed %d", in.X)
		case "sleep":
			time.Sleep(time.Duration(in.X) * time.Millisecond)
		case "init":
			out.S = initValue
		case "gate":
			if _, err := os.ReadFile(in.Path); err != nil {
				return out, err
			}
		}
		return out, nil
	})

	setInit = spawn.Register("pool-init", func(ctx context.Context, v string) error {
		if v == "bad" {
			return errors.New("bad initializer")
		}
		initValue = v
		return nil
	})
)

// children returns the pids of this process's live children (zombies
// included: they are not reaped yet).
func children(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getpid())
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == me {
			pids = append(pids, pid)
		}
	}
	return pids
}

// noChildren fails unless this process has no children, allowing a moment
// for exits in flight.
func noChildren(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := children(t)
		if len(c) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("child processes left: %v", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newPool[In, Out any](t *testing.T, task *spawn.Task[In, Out], opts *spawn.PoolOptions) *spawn.Pool[In, Out] {
	t.Helper()
	p, err := spawn.NewPool(t.Context(), task, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// closeWait shuts p down (Python's close() and join()), which must
// succeed, and checks that no worker is left.
func closeWait[In, Out any](t *testing.T, p *spawn.Pool[In, Out]) {
	t.Helper()
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	noChildren(t)
}

func ints(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

func TestPoolMapOrder(t *testing.T) {
	p := newPool(t, sq, &spawn.PoolOptions{Workers: 3})
	for _, n := range []int{0, 1, 7, 1000, 10007} {
		out, err := p.Map(t.Context(), ints(n))
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != n {
			t.Fatalf("Map(%d) returned %d results", n, len(out))
		}
		for i, y := range out {
			if y != i*i {
				t.Fatalf("Map(%d)[%d] = %d", n, i, y)
			}
		}
	}
	closeWait(t, p)
	// Explicit chunk sizes, including 1 and more than the input.
	for _, cs := range []int{1, 3, 5000} {
		q := newPool(t, sq, &spawn.PoolOptions{Workers: 2, ChunkSize: cs})
		out, err := q.Map(t.Context(), ints(999))
		if err != nil {
			t.Fatal(err)
		}
		for i, y := range out {
			if y != i*i {
				t.Fatalf("chunk %d: [%d] = %d", cs, i, y)
			}
		}
		closeWait(t, q)
	}
}

func TestPoolImap(t *testing.T) {
	p := newPool(t, work, &spawn.PoolOptions{Workers: 3, ChunkSize: 2})
	// Early items sleep longest, so they finish last; Imap must still yield
	// in input order.
	xs := make([]poolIn, 60)
	for i := range xs {
		xs[i] = poolIn{X: i % 5, Op: "sleep"}
		if i < 6 {
			xs[i].X = 40 - i
		}
	}
	i := 0
	for out, err := range p.Imap(t.Context(), slices.Values(xs)) {
		if err != nil {
			t.Fatal(err)
		}
		if out.Y != xs[i].X*xs[i].X {
			t.Fatalf("Imap item %d: %d, want %d", i, out.Y, xs[i].X*xs[i].X)
		}
		i++
	}
	if i != len(xs) {
		t.Fatalf("Imap yielded %d items, want %d", i, len(xs))
	}

	seen := make([]bool, len(xs))
	var order []int
	for i, r := range p.ImapUnordered(t.Context(), slices.Values(xs)) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if seen[i] || r.Value.Y != xs[i].X*xs[i].X {
			t.Fatalf("ImapUnordered: index %d twice or wrong value %d", i, r.Value.Y)
		}
		seen[i] = true
		order = append(order, i)
	}
	if len(order) != len(xs) {
		t.Fatalf("ImapUnordered yielded %d items", len(order))
	}
	if slices.IsSorted(order) {
		t.Errorf("ImapUnordered yielded in input order although the first items sleep longest")
	}

	// Breaking out early leaves the pool usable.
	n := 0
	for range p.Imap(t.Context(), slices.Values(xs)) {
		n++
		if n == 3 {
			break
		}
	}
	if out, err := p.Apply(t.Context(), poolIn{X: 9}); err != nil || out.Y != 81 {
		t.Fatalf("Apply after a break = %v, %v", out, err)
	}

	// An error is yielded in place, and iteration goes on.
	ys := []poolIn{{X: 1}, {X: 2, Op: "fail"}, {X: 3}}
	var errs []error
	for _, err := range p.Imap(t.Context(), slices.Values(ys)) {
		errs = append(errs, err)
	}
	var te *spawn.TaskError
	if len(errs) != 3 || errs[0] != nil || !errors.As(errs[1], &te) || te.Task != 1 || errs[2] != nil {
		t.Fatalf("Imap errors = %v", errs)
	}
	closeWait(t, p)
}

// TestPoolGo: each Go's future yields its task's result and closes Done;
// after Shutdown and then Close, calls fail with ErrShutdown and
// os.ErrClosed; and a Get whose ctx ends returns at once while its task
// runs on (get-cancelled).
func TestPoolGo(t *testing.T) {
	p := newPool(t, sq, &spawn.PoolOptions{Workers: 2})
	fs := make([]*spawn.Future[int], 200)
	for i := range fs {
		fs[i] = p.Go(t.Context(), i)
	}
	for i, f := range fs {
		y, err := f.Get(t.Context())
		if err != nil || y != i*i {
			t.Fatalf("Go(%d).Get = %d, %v", i, y, err)
		}
		select {
		case <-f.Done():
		default:
			t.Fatal("Done not closed after Get")
		}
	}
	y, err := p.Apply(t.Context(), 12)
	if err != nil || y != 144 {
		t.Fatalf("Apply = %d, %v", y, err)
	}
	closeWait(t, p)
	if _, err := p.Apply(t.Context(), 1); !errors.Is(err, spawn.ErrShutdown) {
		t.Fatalf("Apply after Shutdown = %v, want ErrShutdown", err)
	}
	if _, err := p.Map(t.Context(), ints(3)); !errors.Is(err, spawn.ErrShutdown) {
		t.Fatalf("Map after Shutdown = %v, want ErrShutdown", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close after Shutdown = %v", err)
	}
	if _, err := p.Apply(t.Context(), 1); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Apply after Close = %v, want os.ErrClosed", err)
	}
	t.Run("get-cancelled", testGetCancelled)
}

// testGetCancelled: Get whose own ctx is cancelled, before the call or
// while it waits, returns that ctx's error at once although the task still
// runs (it blocks on a FIFO until the test writes to it), and the task
// goes on: a later Get has its result. The bound only a hang misses.
func testGetCancelled(t *testing.T) {
	p := newPool(t, work, &spawn.PoolOptions{Workers: 1})
	gate := filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	f := p.Go(t.Context(), poolIn{X: 5, Op: "gate", Path: gate})
	get := func(ctx context.Context) error {
		t.Helper()
		errc := make(chan error, 1)
		go func() {
			_, err := f.Get(ctx)
			errc <- err
		}()
		select {
		case err := <-errc:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Get with a cancelled ctx still waiting 10 s later for a running task")
			return nil
		}
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := get(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get(cancelled ctx) on a running task = %v, want context.Canceled", err)
	}
	short, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get(ctx ending while it waits) on a running task = %v, want context.DeadlineExceeded", err)
	}
	select {
	case <-f.Done():
		t.Fatal("the task is done although its gate is shut")
	default:
	}
	// Open the gate (this waits for the task to open its end) and fetch
	// the result the cancelled Gets left.
	if err := os.WriteFile(gate, []byte("go"), 0); err != nil {
		t.Fatal(err)
	}
	if out, err := f.Get(t.Context()); err != nil || out.Y != 25 {
		t.Fatalf("Get after the cancelled ones = %+v, %v, want 25", out, err)
	}
	closeWait(t, p)
}

// TestPoolWorkerKilled: a task that SIGKILLs its own worker amid 1,000
// others fails alone, with a *WorkerError naming it, the pid and the signal;
// the rest succeed. Likewise for a task that calls os.Exit.
func TestPoolWorkerKilled(t *testing.T) {
	for _, tc := range []struct {
		op   string
		sig  os.Signal
		code int
	}{
		{"kill", syscall.SIGKILL, -1},
		{"exit", nil, 7},
	} {
		t.Run(tc.op, func(t *testing.T) {
			p := newPool(t, work, &spawn.PoolOptions{Workers: 3})
			before := p.Pids()
			const bad = 537
			xs := make([]poolIn, 1000)
			for i := range xs {
				xs[i].X = i
			}
			xs[bad].Op = tc.op
			t0 := time.Now()
			out, err := p.Map(t.Context(), xs)
			t.Logf("Map with one dying worker: %v", time.Since(t0))
			var me *spawn.MapError
			if !errors.As(err, &me) || len(me.Errs) != 1 || me.Total != 1000 {
				t.Fatalf("Map error = %v, want a MapError with one item", err)
			}
			var we *spawn.WorkerError
			if !errors.As(err, &we) {
				t.Fatalf("Map error = %v, want a *WorkerError", err)
			}
			if we.Task != bad || we.Signal != tc.sig || we.ExitCode != tc.code {
				t.Fatalf("WorkerError = %+v, want task %d, signal %v, code %d", we, bad, tc.sig, tc.code)
			}
			if !slices.Contains(before, we.Pid) {
				t.Fatalf("WorkerError pid %d is not one of the workers %v", we.Pid, before)
			}
			if !strings.Contains(we.Stderr, fmt.Sprintf("task %d:", bad)) {
				t.Fatalf("WorkerError stderr tail %q lacks the task's last words", we.Stderr)
			}
			for i, o := range out {
				if i != bad && o.Y != i*i {
					t.Fatalf("item %d = %+v", i, o)
				}
			}
			// The pool replaced the worker (within a second: the start is
			// asynchronous) and goes on.
			after := p.Pids()
			for deadline := time.Now().Add(time.Second); len(after) < 3 && time.Now().Before(deadline); after = p.Pids() {
				time.Sleep(5 * time.Millisecond)
			}
			if len(after) != 3 || slices.Contains(after, we.Pid) {
				t.Fatalf("workers after the death: %v (dead: %d)", after, we.Pid)
			}
			if _, err := p.Map(t.Context(), xs[:bad]); err != nil {
				t.Fatal(err)
			}
			closeWait(t, p)
		})
	}
}

// TestPoolWorkerKilledGo: Go of a task that kills its worker fails only
// that future.
func TestPoolWorkerKilledGo(t *testing.T) {
	p := newPool(t, work, &spawn.PoolOptions{Workers: 2})
	fs := make([]*spawn.Future[poolOut], 50)
	for i := range fs {
		in := poolIn{X: i}
		if i == 20 {
			in.Op = "kill"
		}
		fs[i] = p.Go(t.Context(), in)
	}
	for i, f := range fs {
		out, err := f.Get(t.Context())
		var we *spawn.WorkerError
		if i == 20 {
			if !errors.As(err, &we) || we.Task != 0 || we.Signal != syscall.SIGKILL {
				t.Fatalf("Go(kill).Get = %v", err)
			}
			continue
		}
		if err != nil || out.Y != i*i {
			t.Fatalf("Go(%d).Get = %+v, %v", i, out, err)
		}
	}
	closeWait(t, p)
}

func TestPoolPanic(t *testing.T) {
	p := newPool(t, work, &spawn.PoolOptions{Workers: 2})
	before := p.Pids()
	xs := make([]poolIn, 100)
	for i := range xs {
		xs[i].X = i
	}
	xs[10].Op, xs[70].Op = "panic", "fail"
	out, err := p.Map(t.Context(), xs)
	var me *spawn.MapError
	if !errors.As(err, &me) || len(me.Errs) != 2 {
		t.Fatalf("Map error = %v", err)
	}
	var te *spawn.TaskError
	if !errors.As(me.Errs[0], &te) || te.Task != 10 || !te.Panic || te.Msg != "boom 10" || !strings.Contains(te.Stack, "panic") {
		t.Fatalf("first error = %#v", me.Errs[0])
	}
	if !errors.As(me.Errs[1], &te) || te.Task != 70 || te.Panic || te.Msg != "failed 70" {
		t.Fatalf("second error = %#v", me.Errs[1])
	}
	for i, o := range out {
		if i != 10 && i != 70 && o.Y != i*i {
			t.Fatalf("item %d = %+v", i, o)
		}
		// The workers lived: every item ran on one of the first workers.
		if i != 10 && i != 70 && !slices.Contains(before, o.Pid) {
			t.Fatalf("item %d ran on pid %d, not one of %v", i, o.Pid, before)
		}
	}
	_, err = p.Apply(t.Context(), poolIn{X: 1, Op: "panic"})
	if !errors.As(err, &te) || !te.Panic {
		t.Fatalf("Apply(panic) = %v", err)
	}
	closeWait(t, p)
}

func TestPoolMaxTasksPerWorker(t *testing.T) {
	p := newPool(t, work, &spawn.PoolOptions{Workers: 2, MaxTasksPerWorker: 10})
	xs := make([]poolIn, 100)
	for i := range xs {
		xs[i].X = i
	}
	out, err := p.Map(t.Context(), xs)
	if err != nil {
		t.Fatal(err)
	}
	perPid := map[int]int{}
	for i, o := range out {
		if o.Y != i*i {
			t.Fatalf("item %d = %+v", i, o)
		}
		perPid[o.Pid]++
	}
	if len(perPid) < 10 {
		t.Fatalf("100 items with 10 per worker ran on %d workers", len(perPid))
	}
	for pid, n := range perPid {
		if n > 10 {
			t.Fatalf("worker %d ran %d items", pid, n)
		}
	}
	closeWait(t, p)
}

func TestPoolInitializer(t *testing.T) {
	p := newPool(t, work, &spawn.PoolOptions{Workers: 2, Initializer: spawn.Init(setInit, "ready"), MaxTasksPerWorker: 3})
	out, err := p.Map(t.Context(), []poolIn{{Op: "init"}, {Op: "init"}, {Op: "init"}, {Op: "init"}, {Op: "init"}, {Op: "init"}, {Op: "init"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.S != "ready" {
			t.Fatalf("initializer did not run: %+v", out)
		}
	}
	closeWait(t, p)

	// An initializer that fails breaks the pool instead of respawning
	// workers forever.
	q, err := spawn.NewPool(t.Context(), work, &spawn.PoolOptions{Workers: 2, Initializer: spawn.Init(setInit, "bad"), Stderr: new(strings.Builder)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = q.Map(t.Context(), []poolIn{{X: 1}})
	if !errors.Is(err, spawn.ErrBroken) || !strings.Contains(err.Error(), "bad initializer") {
		t.Fatalf("Map on a pool whose initializer fails = %v", err)
	}
	if err := q.Shutdown(t.Context()); !errors.Is(err, spawn.ErrBroken) {
		t.Fatalf("Shutdown = %v, want ErrBroken", err)
	}
	if err := q.Close(); !errors.Is(err, spawn.ErrBroken) {
		t.Fatalf("Close = %v, want ErrBroken", err)
	}
	noChildren(t)
}

// TestPoolCancelMap: a Map whose ctx ends returns at once, and the pool
// is free for the next calls. Its items take an hour, so a Map that
// waited for one cannot pass, nor calls stuck behind one; the bounds are
// far above anything a loaded machine needs, and far below an hour. (That
// no item of a cancelled call escapes, whatever the timing, is proven by
// the tests of pool_cancel_internal_test.go, which hold each window
// open.)
func TestPoolCancelMap(t *testing.T) {
	const stuck = 30 * time.Second
	p := newPool(t, work, &spawn.PoolOptions{Workers: 2, ChunkSize: 1})
	xs := make([]poolIn, 100)
	for i := range xs {
		xs[i] = poolIn{X: 3600_000, Op: "sleep"} // an hour each
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := p.Map(ctx, xs)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Map = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(t0); d > stuck {
		t.Fatalf("Map returned %v after its deadline", d)
	}
	// The workers running its items were killed and replaced, the others
	// skip its chunks: two calls at once run, one on each worker.
	actx, acancel := context.WithTimeout(t.Context(), stuck)
	defer acancel()
	f1, f2 := p.Go(actx, poolIn{X: 3}), p.Go(actx, poolIn{X: 4})
	if out, err := f1.Get(actx); err != nil || out.Y != 9 {
		t.Fatalf("Go after cancel = %+v, %v", out, err)
	}
	if out, err := f2.Get(actx); err != nil || out.Y != 16 {
		t.Fatalf("Go after cancel = %+v, %v", out, err)
	}
	closeWait(t, p)
}

// TestPoolCancelGo: cancelling a Go's ctx fails it at once, though its
// item takes an hour (the bound is far above what a loaded machine needs).
func TestPoolCancelGo(t *testing.T) {
	p := newPool(t, work, &spawn.PoolOptions{Workers: 1})
	ctx, cancel := context.WithCancel(t.Context())
	f := p.Go(ctx, poolIn{X: 3600_000, Op: "sleep"})
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-f.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("future not done 30 s after its ctx was cancelled")
	}
	if _, err := f.Get(t.Context()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get = %v", err)
	}
	closeWait(t, p)
}

// TestPoolClose: Close kills the workers now (Python's terminate()),
// fails the unfinished calls with an error matching os.ErrClosed, and
// takes no more work; it is safe twice, and Shutdown after it reports
// os.ErrClosed too.
func TestPoolClose(t *testing.T) {
	p, err := spawn.NewPool(t.Context(), work, &spawn.PoolOptions{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	pids := p.Pids()
	if len(children(t)) != 3 {
		t.Fatalf("children = %v, want the 3 workers %v", children(t), pids)
	}
	xs := make([]poolIn, 30)
	for i := range xs {
		xs[i] = poolIn{X: 3600_000, Op: "sleep"} // an hour: Close must not wait for them
	}
	done := make(chan error)
	go func() {
		_, err := p.Map(t.Context(), xs)
		done <- err
	}()
	f := p.Go(t.Context(), poolIn{X: 3600_000, Op: "sleep"})
	time.Sleep(100 * time.Millisecond)
	t0 := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if d := time.Since(t0); d > 30*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if err := <-done; !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Map = %v, want os.ErrClosed", err)
	}
	if _, err := f.Get(t.Context()); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Get = %v, want os.ErrClosed", err)
	}
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("worker %d still exists after Close", pid)
		}
	}
	noChildren(t)
	if err := p.Close(); err != nil { // twice is fine
		t.Fatalf("second Close = %v", err)
	}
	if _, err := p.Apply(t.Context(), poolIn{X: 2}); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Apply after Close = %v, want os.ErrClosed", err)
	}
	if err := p.Shutdown(t.Context()); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Shutdown after Close = %v, want os.ErrClosed", err)
	}
	if pids := p.Pids(); len(pids) != 0 {
		t.Fatalf("Pids after Close = %v", pids)
	}
}

// TestPoolShutdownFinishes: Shutdown takes no more work at once, lets the
// submitted work finish, then the workers exit (Python's close() and
// join()).
func TestPoolShutdownFinishes(t *testing.T) {
	p := newPool(t, work, &spawn.PoolOptions{Workers: 2})
	fs := make([]*spawn.Future[poolOut], 6)
	for i := range fs {
		fs[i] = p.Go(t.Context(), poolIn{X: 20, Op: "sleep"})
	}
	pids := p.Pids()
	done := make(chan error, 1)
	go func() { done <- p.Shutdown(t.Context()) }()
	// Shutdown refuses new work at once, before the old is done.
	for {
		_, err := p.Apply(t.Context(), poolIn{X: 1})
		if errors.Is(err, spawn.ErrShutdown) {
			break
		}
		if err != nil {
			t.Fatalf("Apply while shutting down = %v", err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	for _, f := range fs {
		select {
		case <-f.Done():
		default:
			t.Fatal("Shutdown returned before the submitted work was done")
		}
		if out, err := f.Get(t.Context()); err != nil || out.Y != 400 {
			t.Fatalf("Get = %+v, %v", out, err)
		}
	}
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("worker %d still exists after Shutdown", pid)
		}
	}
	noChildren(t)
	if err := p.Shutdown(t.Context()); err != nil { // twice is fine
		t.Fatalf("second Shutdown = %v", err)
	}
}

// TestPoolShutdownCtx: a Shutdown whose ctx ends first returns ctx.Err()
// and the pool goes on draining; a later Shutdown waits for the rest, or
// Close stops it.
func TestPoolShutdownCtx(t *testing.T) {
	for _, then := range []string{"shutdown", "close"} {
		t.Run(then, func(t *testing.T) {
			p := newPool(t, work, &spawn.PoolOptions{Workers: 1})
			f := p.Go(t.Context(), poolIn{X: 300, Op: "sleep"})
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			defer cancel()
			if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown with a short ctx = %v, want DeadlineExceeded", err)
			}
			if _, err := p.Apply(t.Context(), poolIn{X: 1}); !errors.Is(err, spawn.ErrShutdown) {
				t.Fatalf("Apply after Shutdown = %v, want ErrShutdown", err)
			}
			if then == "close" {
				if err := p.Close(); err != nil {
					t.Fatalf("Close = %v", err)
				}
				if _, err := f.Get(t.Context()); !errors.Is(err, os.ErrClosed) {
					t.Fatalf("Get after Close = %v, want os.ErrClosed", err)
				}
				noChildren(t)
				return
			}
			if err := p.Shutdown(t.Context()); err != nil {
				t.Fatalf("second Shutdown = %v", err)
			}
			if out, err := f.Get(t.Context()); err != nil || out.Y != 300*300 {
				t.Fatalf("Get = %+v, %v", out, err)
			}
			noChildren(t)
		})
	}
}

// TestPoolParentCtx: the end of NewPool's ctx closes the pool: its calls
// fail with an error matching both os.ErrClosed and the ctx's error, and
// the workers go.
func TestPoolParentCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	p, err := spawn.NewPool(ctx, sq, &spawn.PoolOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = p.Apply(t.Context(), 2)
	if !errors.Is(err, os.ErrClosed) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply after ctx cancel = %v, want os.ErrClosed and context.Canceled", err)
	}
	noChildren(t)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMapLargeMessages: chunks and result messages far larger than the
// readers' initial buffers (each side grows its buffer and goes on).
func TestMapLargeMessages(t *testing.T) {
	p, err := spawn.NewPool(t.Context(), sq, &spawn.PoolOptions{Workers: 2, ChunkSize: 20_000})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	xs := ints(40_000)
	for i := range xs {
		xs[i] += 1 << 40 // 8-byte gob ints: chunks of about 160 KB
	}
	out, err := p.Map(t.Context(), xs)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range xs {
		if out[i] != x*x {
			t.Fatalf("item %d: %d, want %d", i, out[i], x*x)
		}
	}
}

// TestPoolImapBreakThenShutdown: breaking out of Imap or ImapUnordered
// while one of its items runs forever (or waits at a worker to run) must
// not keep Shutdown waiting for it: the workers inside its items are
// killed at the break, and Shutdown kills those that still hold only its
// chunks.
func TestPoolImapBreakThenShutdown(t *testing.T) {
	forever := poolIn{X: 3600_000, Op: "sleep"} // an hour
	for _, c := range []struct {
		name    string
		workers int
		xs      []poolIn
		unord   bool
	}{
		{"running", 2, []poolIn{{X: 1}, forever, {X: 3}}, false},
		{"queued", 1, []poolIn{{X: 1}, forever}, false},
		{"unordered", 2, []poolIn{{X: 1}, forever, {X: 3}}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPool(t, work, &spawn.PoolOptions{Workers: c.workers, ChunkSize: 1})
			if c.unord {
				for _, r := range p.ImapUnordered(t.Context(), slices.Values(c.xs)) {
					if r.Err != nil {
						t.Fatal(r.Err)
					}
					break
				}
			} else {
				for _, err := range p.Imap(t.Context(), slices.Values(c.xs)) {
					if err != nil {
						t.Fatal(err)
					}
					break
				}
			}
			done := make(chan error, 1)
			go func() { done <- p.Shutdown(t.Context()) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Shutdown = %v", err)
				}
			case <-time.After(10 * time.Second):
				p.Close()
				<-done
				t.Fatalf("Shutdown still waiting after 10 s for an item of a loop broken out of")
			}
			noChildren(t)
		})
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("no space") }

// TestPoolStderrTailWriterFails: a Stderr writer that fails does not cost
// the WorkerError its stderr tail.
func TestPoolStderrTailWriterFails(t *testing.T) {
	p := newPool(t, work, &spawn.PoolOptions{Workers: 1, Stderr: failWriter{}})
	_, err := p.Map(t.Context(), []poolIn{{X: 1, Op: "fail"}, {X: 2, Op: "kill"}, {X: 3}})
	var we *spawn.WorkerError
	if !errors.As(err, &we) || we.Task != 1 {
		t.Fatalf("Map = %v, want item 1's WorkerError", err)
	}
	if !strings.Contains(we.Stderr, "task 2: killing myself") {
		t.Fatalf("WorkerError.Stderr = %q, want the task's last words", we.Stderr)
	}
	closeWait(t, p)
}
