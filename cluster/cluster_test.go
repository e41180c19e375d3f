//go:build linux

package cluster_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipckit/ipckit/cluster"
	"github.com/ipckit/ipckit/spawn"
)

// The calls of a cluster pool return what a local pool's do, and the pool
// is a spawn.Executor.
func TestCalls(t *testing.T) {
	e := newEnv(t)
	e.worker(serveArg{Tasks: []string{"cl-square"}, Workers: 2})
	var p spawn.Executor[int, int] = pool(e, square, &cluster.Options{ChunkSize: 3})
	ctx := e.ctx()
	xs := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	want := make([]int, len(xs))
	for i, x := range xs {
		want[i] = x * x
	}
	out, err := p.Map(ctx, xs)
	if err != nil || !slices.Equal(out, want) {
		t.Fatalf("Map = %v, %v; want %v", out, err, want)
	}
	var got []int
	for y, err := range p.Imap(ctx, slices.Values(xs)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, y)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Imap = %v; want %v", got, want)
	}
	seen := make([]int, len(xs))
	for i, r := range p.ImapUnordered(ctx, slices.Values(xs)) {
		if r.Err != nil || r.Value != want[i] {
			t.Fatalf("ImapUnordered[%d] = %+v", i, r)
		}
		seen[i]++
	}
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("ImapUnordered yielded item %d %d times", i, n)
		}
	}
	if y, err := p.Apply(ctx, 12); y != 144 || err != nil {
		t.Fatalf("Apply(12) = %d, %v", y, err)
	}
	if y, err := p.Go(ctx, 13).Get(ctx); y != 169 || err != nil {
		t.Fatalf("Go(13) = %d, %v", y, err)
	}
	if out, err := p.Map(ctx, nil); err != nil || len(out) != 0 {
		t.Fatalf("Map(nil) = %v, %v", out, err)
	}
	// Leaving an Imap loop early cancels the rest and returns.
	for range p.Imap(ctx, slices.Values(xs)) {
		break
	}
}

// An Imap reads its sequence at most Window items ahead of the results:
// an endless sequence does not flood the stream.
func TestImapWindow(t *testing.T) {
	e := newEnv(t)
	e.worker(serveArg{Tasks: []string{"cl-square"}, Workers: 2})
	p := pool(e, square, &cluster.Options{Window: 10})
	drawn := 0
	endless := func(yield func(int) bool) {
		for i := 0; yield(i); i++ {
			drawn++
		}
	}
	n := 0
	for y, err := range p.Imap(e.ctx(), endless) {
		if err != nil || y != n*n {
			t.Fatalf("Imap item %d = %d, %v", n, y, err)
		}
		if n++; n == 30 {
			break
		}
	}
	if drawn > 30+10 {
		t.Fatalf("Imap drew %d items for 30 results, want at most 30 + Window (10)", drawn)
	}
}

// A task's error or panic fails its own item, with its index in the call,
// as in a local pool; the others succeed.
func TestTaskErrors(t *testing.T) {
	e := newEnv(t)
	e.worker(serveArg{Tasks: []string{"cl-picky"}, Workers: 2})
	p := pool(e, picky, &cluster.Options{ChunkSize: 4})
	xs := []int{1, 2, 3, 4, 5, 7, 8, 9, 11}
	out, err := p.Map(e.ctx(), xs)
	var me *spawn.MapError
	if !errors.As(err, &me) || me.Total != len(xs) || len(me.Errs) != 3 {
		t.Fatalf("Map = %v, %v; want a MapError of 3 in %d", out, err, len(xs))
	}
	for k, want := range []struct {
		task  int
		panic bool
		msg   string
	}{{2, false, "three divides 3"}, {4, true, "five divides 5"}, {7, false, "three divides 9"}} {
		var te *spawn.TaskError
		if !errors.As(me.Errs[k], &te) || te.Task != want.task || te.Panic != want.panic || te.Msg != want.msg || te.Pid == 0 {
			t.Fatalf("error %d = %#v, want item %d's", k, me.Errs[k], want.task)
		}
	}
	for i, x := range xs {
		if x%3 != 0 && x%5 != 0 && out[i] != x {
			t.Fatalf("item %d = %d, want %d", i, out[i], x)
		}
	}
	if _, err := p.Apply(e.ctx(), 6); err == nil || !strings.Contains(err.Error(), "three divides 6") {
		t.Fatalf("Apply(6) = %v", err)
	}
}

// A task that runs longer than AckWait is not delivered again: its worker
// reports progress.
func TestLongTaskNotRedelivered(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	e.worker(serveArg{Tasks: []string{"cl-block"}, Workers: 2, AckWait: time.Second})
	p := pool(e, block, nil)
	k, err := p.Apply(e.ctx(), markArg{Dir: dir, Key: "long", Sleep: 2500 * time.Millisecond})
	if k != 1 || err != nil {
		t.Fatalf("Apply = %d, %v; want the first run", k, err)
	}
	if n := marks(t, dir, "long"); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
}

// 10,000 small items on two workers: exactly one result per item, in
// order, and nothing left in the stream.
func TestTenThousandExactlyOnce(t *testing.T) {
	e := newEnv(t)
	e.worker(serveArg{Tasks: []string{"cl-square"}, Workers: 2})
	e.worker(serveArg{Tasks: []string{"cl-square"}, Workers: 2})
	p := pool(e, square, &cluster.Options{ChunkSize: 50})
	xs := make([]int, 10000)
	for i := range xs {
		xs[i] = i
	}
	out, err := p.Map(e.ctx(), xs)
	if err != nil {
		t.Fatal(err)
	}
	for i, y := range out {
		if y != i*i {
			t.Fatalf("item %d: %d, want %d", i, y, i*i)
		}
	}
	n := 0
	for i, r := range p.ImapUnordered(e.ctx(), slices.Values(xs)) {
		if r.Err != nil || r.Value != i*i {
			t.Fatalf("ImapUnordered[%d] = %+v", i, r)
		}
		n++
	}
	if n != len(xs) {
		t.Fatalf("ImapUnordered yielded %d results, want %d", n, len(xs))
	}
	e.waitFor("an empty tasks stream", func() bool { return e.queued() == 0 }, nil)
}

// Workers with different task sets each get their own tasks; a task no
// worker serves is refused at once.
func TestWorkersWithDifferentTasks(t *testing.T) {
	e := newEnv(t)
	e.worker(serveArg{Tasks: []string{"cl-square"}})
	e.worker(serveArg{Tasks: []string{"cl-cube"}})
	ctx := e.ctx()
	sq, cu := pool(e, square, nil), pool(e, cube, nil)
	for x := range 20 {
		a, b := sq.Go(ctx, x), cu.Go(ctx, x)
		if y, err := a.Get(ctx); y != x*x || err != nil {
			t.Fatalf("square(%d) = %d, %v", x, y, err)
		}
		if y, err := b.Get(ctx); y != x*x*x || err != nil {
			t.Fatalf("cube(%d) = %d, %v", x, y, err)
		}
	}
	_, err := cluster.NewPool(ctx, e.nc, nobody, nil)
	if !errors.Is(err, cluster.ErrNoWorker) || !strings.Contains(err.Error(), "cl-nobody") {
		t.Fatalf("NewPool(cl-nobody) = %v, want ErrNoWorker naming the task", err)
	}
}

// A worker SIGKILLed in the middle of a task: the task is delivered again
// after AckWait, to the next worker, and the call completes.
func TestWorkerKilledMidTask(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	a := e.worker(serveArg{Tasks: []string{"cl-block"}, AckWait: time.Second})
	p := pool(e, block, nil)
	ctx := e.ctx()
	f := p.Go(ctx, markArg{Dir: dir, Key: "k", Runs: 1})
	e.waitFor("the first run", func() bool { return marks(t, dir, "k") == 1 }, a)
	a.Kill()
	a.Wait()
	e.worker(serveArg{Tasks: []string{"cl-block"}, AckWait: time.Second})
	k, err := f.Get(ctx)
	if err != nil || k != 2 {
		t.Fatalf("Get = %d, %v; want the second run's 2", k, err)
	}
	if n := marks(t, dir, "k"); n != 2 {
		t.Fatalf("%d runs, want 2", n)
	}
}

// A task that kills every worker that takes it fails after MaxDeliver
// deliveries with a WorkerError naming it; the other items complete.
func TestMaxDeliver(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	sa := serveArg{Tasks: []string{"cl-die"}, AckWait: time.Second, MaxDeliver: 2}
	ctx := e.ctx()
	var f *spawn.Future[int]
	for i := range 2 {
		// The first worker makes the task's consumer; the second takes
		// the task again, and may die of it before it looks ready.
		w := e.startWorker(sa, i == 0)
		if i == 0 {
			f = pool(e, die, nil).Go(ctx, markArg{Dir: dir, Key: "d"})
		}
		<-w.Done()
		if n := marks(t, dir, "d"); n != i+1 {
			t.Fatalf("%d runs after %d dead workers", n, i+1)
		}
	}
	e.worker(sa) // a live worker: it must not get a third delivery
	_, err := f.Get(ctx)
	var we *spawn.WorkerError
	if !errors.As(err, &we) || !errors.Is(err, cluster.ErrMaxDeliver) || !strings.Contains(err.Error(), `"cl-die"`) {
		t.Fatalf("Get = %v; want a WorkerError wrapping ErrMaxDeliver naming the task", err)
	}
	if n := marks(t, dir, "d"); n != 2 {
		t.Fatalf("%d runs, want MaxDeliver = 2", n)
	}
	e.waitFor("the dead task deleted from the stream", func() bool { return e.queued() == 0 }, nil)
}

// Cancelling a call returns at once; its running task is stopped and its
// queued tasks never run.
func TestCancel(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	_, p, cancel, done := blockedMap(t, e, dir, "c")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Map = %v, want context.Canceled", err)
	}
	// The worker is free again: a later call runs (behind the cancelled
	// call's chunks, if any were still queued).
	if k, err := p.Apply(e.ctx(), markArg{Dir: dir, Key: "after"}); k != 1 || err != nil {
		t.Fatalf("Apply after the cancel = %d, %v", k, err)
	}
	if n := marks(t, dir, "c"); n != 1 {
		t.Fatalf("%d items of the cancelled call ran, want only the one running", n)
	}
	e.waitFor("an empty tasks stream", func() bool { return e.queued() == 0 }, nil)
}

// Cancelling a call whose worker is dead: its queued tasks, and the one
// the dead worker held, are purged, and the next worker never runs them.
func TestCancelQueued(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w, p, cancel, done := blockedMap(t, e, dir, "q")
	w.Kill()
	w.Wait()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Map = %v, want context.Canceled", err)
	}
	e.waitFor("the call's tasks purged", func() bool { return e.queued() == 0 }, nil)
	e.worker(serveArg{Tasks: []string{"cl-block"}})
	if k, err := p.Apply(e.ctx(), markArg{Dir: dir, Key: "after"}); k != 1 || err != nil {
		t.Fatalf("Apply after the cancel = %d, %v", k, err)
	}
	if n := marks(t, dir, "q"); n != 1 {
		t.Fatalf("%d items of the cancelled call ran, want only the one running", n)
	}
}

// A server restarted on its file store in the middle of a Map keeps every
// task: the Map completes with every result.
func TestServerRestartMidMap(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	e.worker(serveArg{Tasks: []string{"cl-block"}, Workers: 2, AckWait: 2 * time.Second})
	p := pool(e, block, &cluster.Options{ChunkSize: 1})
	xs := make([]markArg, 200)
	for i := range xs {
		xs[i] = markArg{Dir: dir, Key: "r" + string(rune('a'+i%26)) + string(rune('a'+i/26))}
	}
	done := make(chan error, 1)
	var out []int
	go func() {
		var err error
		out, err = p.Map(e.ctx(), xs)
		done <- err
	}()
	e.waitFor("a few items done", func() bool {
		n, _ := globCount(dir)
		return n >= 5
	}, nil)
	port := e.srv.Port()
	e.srv.Shutdown()
	var err error
	if e.srv, err = cluster.StartServer(&cluster.ServerOptions{Dir: e.dir, Port: port}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Map: %v\n%s", err, e.state())
	}
	for i, k := range out {
		if k < 1 {
			t.Fatalf("item %d: %d", i, k)
		}
	}
	if n, _ := globCount(dir); n < len(xs) {
		t.Fatalf("%d runs for %d items", n, len(xs))
	}
}

func globCount(dir string) (int, error) {
	es, err := os.ReadDir(dir)
	return len(es), err
}

// Bad input fails its own items with clear errors, never hangs: an
// argument gob cannot encode, an item over the server's max payload.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.worker(serveArg{Tasks: []string{"cl-echo", "cl-strlen"}})
	ctx := e.ctx()
	ep := pool(e, echo, &cluster.Options{ChunkSize: 3}) // one chunk: the bad item is split off
	out, err := ep.Map(ctx, []any{1, func() {}, "x"})
	var me *spawn.MapError
	if !errors.As(err, &me) || len(me.Errs) != 1 || out[0] != 1 || out[2] != "x" {
		t.Fatalf("Map with a func = %v, %v", out, err)
	}
	var te *spawn.TaskError
	if !errors.As(me.Errs[0], &te) || te.Task != 1 || !strings.Contains(te.Msg, "cannot send") {
		t.Fatalf("the func's error = %v", me.Errs[0])
	}
	sp := pool(e, strlen, &cluster.Options{ChunkSize: 3})
	big := strings.Repeat("x", 2<<20)
	lens, err := sp.Map(ctx, []string{"ab", big, "abc"})
	if !errors.As(err, &me) || len(me.Errs) != 1 || lens[0] != 2 || lens[2] != 3 {
		t.Fatalf("Map with a 2 MiB item = %v, %v", lens, err)
	}
	if !errors.As(me.Errs[0], &te) || te.Task != 1 || !strings.Contains(te.Msg, "max payload") {
		t.Fatalf("the big item's error = %v", me.Errs[0])
	}
	if !errors.Is(err, cluster.ErrTooLarge) {
		t.Fatalf("Map with a 2 MiB item = %v, does not match cluster.ErrTooLarge", err)
	}
	if _, err := sp.Apply(ctx, big); err == nil {
		t.Fatal("Apply of a 2 MiB item succeeded")
	}
}

// blockedMap starts a worker serving cl-block and a Map of 10 blocking items
// (key key, chunks of 1) under a cancellable ctx, and waits until the first
// item runs. done receives the Map's error.
func blockedMap(t *testing.T, e *env, dir, key string) (w *spawn.Process, p *cluster.Pool[markArg, int], cancel context.CancelFunc, done chan error) {
	t.Helper()
	w = e.worker(serveArg{Tasks: []string{"cl-block"}})
	p = pool(e, block, &cluster.Options{ChunkSize: 1})
	xs := make([]markArg, 10)
	for i := range xs {
		xs[i] = markArg{Dir: dir, Key: key, Runs: 1000}
	}
	ctx, cancel := context.WithCancel(e.ctx())
	done = make(chan error, 1)
	go func() {
		_, err := p.Map(ctx, xs)
		done <- err
	}()
	e.waitFor("the first item to run", func() bool { return marks(t, dir, key) == 1 }, w)
	return w, p, cancel, done
}
