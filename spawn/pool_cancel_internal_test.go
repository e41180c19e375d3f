//go:build linux

package spawn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ipckit/ipckit/shm"
)

// The cancel tests: a cancelled call leaves nothing of its own running or
// queued on any worker (see "Cancelling a call" in pool_worker.go). Each
// test holds one window open with a fault hook, cancels a Map inside it,
// then lets everything go on, and checks that no item of the Map ran: the
// task counts every start in a shared array (marks), and the Map's items
// wait forever on a gate nobody opens, so one that escaped would also
// keep its worker, and the Apply that follows, from ever finishing. No
// bound is on time: waits are for events, with deadlines (stuckAfter)
// that only a hang reaches.

// markItem is the cancel tests' task input: the task adds 1 to
// marks[Mark] when it starts, then waits until marks[Gate] is set (Gate 0:
// no wait).
type markItem struct {
	Mark, Gate int
}

const (
	marksLen   = 16
	neverGate  = marksLen - 1 // a gate nobody opens
	stuckAfter = 30 * time.Second
)

// cancelMarks is the marks array in a worker, set by its initializer.
var cancelMarks *shm.Int64Array

var (
	markInit = Register("pool-cancel-init", func(ctx context.Context, a *shm.Int64Array) error {
		cancelMarks = a
		return nil
	})
	markTask = RegisterTask("pool-cancel-task", func(ctx context.Context, x markItem) (int, error) {
		cancelMarks.Add(x.Mark, 1)
		for x.Gate != 0 && cancelMarks.Load(x.Gate) == 0 {
			time.Sleep(time.Millisecond)
		}
		return x.Mark, nil
	})
)

// cancelPool starts a pool of one worker running markTask with hooks h,
// and returns it with its marks array.
func cancelPool(t *testing.T, h *hooks) (*Pool[markItem, int], *shm.Int64Array) {
	t.Helper()
	marks, err := shm.NewArray[int64](marksLen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { marks.Close() })
	opts := &PoolOptions{Workers: 1, ChunkSize: 1, Initializer: Init(markInit, marks)}
	p, err := newPool(context.Background(), markTask, opts, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, marks
}

// newHold returns a hold array (see workerSetup.hold) set to hold at
// point.
func newHold(t *testing.T, point int64) *shm.Int64Array {
	t.Helper()
	h, err := shm.NewArray[int64](holdLen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.Store(holdAt, point)
	return h
}

// waitFor polls cond until it holds, failing the test after stuckAfter.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(stuckAfter)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("stuck: %s did not happen in %v", what, stuckAfter)
		}
		time.Sleep(time.Millisecond)
	}
}

// onlyWorker returns the pool's one worker.
func onlyWorker(t *testing.T, p *Pool[markItem, int]) *worker[markItem, int] {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		return w
	}
	t.Fatal("the pool has no worker")
	return nil
}

// startMap runs a Map of two items that would wait forever (marks 2 and
// 3), on a goroutine, and returns its cancel and its result.
func startMap(p *Pool[markItem, int]) (context.CancelFunc, <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Map(ctx, []markItem{{Mark: 2, Gate: neverGate}, {Mark: 3, Gate: neverGate}})
		done <- err
	}()
	return cancel, done
}

// cancelMap cancels the Map and checks that it returned context.Canceled.
func cancelMap(t *testing.T, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Map = %v, want context.Canceled", err)
		}
	case <-time.After(stuckAfter):
		t.Fatalf("stuck: the cancelled Map did not return in %v", stuckAfter)
	}
}

// checkAfterCancel runs an Apply, which must finish (an item of the
// cancelled Map still queued or running would keep the one worker from
// it), and checks that no item of the Map started. It returns the pid of
// the worker that ran the Apply.
func checkAfterCancel(t *testing.T, p *Pool[markItem, int], marks *shm.Int64Array) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stuckAfter)
	defer cancel()
	if y, err := p.Apply(ctx, markItem{Mark: 4}); err != nil || y != 4 {
		t.Fatalf("Apply after the cancelled Map = %d, %v (the Map's items started %d and %d times)",
			y, err, marks.Load(2), marks.Load(3))
	}
	if a, b := marks.Load(2), marks.Load(3); a != 0 || b != 0 {
		t.Fatalf("items of the cancelled Map ran after its cancel: %d, %d starts", a, b)
	}
	if m := marks.Load(4); m != 1 {
		t.Fatalf("the Apply's item started %d times", m)
	}
	return onlyWorker(t, p).proc.Pid
}

// TestCancelMapTakenChunk holds the window of issue 14 item 4: a worker
// has taken a chunk of the Map off its task queue and not yet recorded
// it, and the chunk it holds first (for the parent) is another call's,
// whose result the parent has not yet applied. Two hooks hold it: the
// worker holds after taking each chunk, and the parent's reader holds
// before it applies the other call's result. The Map is cancelled there;
// then both go on. The worker, which runs no item of the Map, must not be
// killed, and must skip the chunk.
func TestCancelMapTakenChunk(t *testing.T) {
	hold := newHold(t, holdTaken)
	readerHeld, releaseReader := make(chan struct{}), make(chan struct{})
	token := make(chan struct{}, 1) // held by the first result only
	token <- struct{}{}
	h := &hooks{workerHold: hold, poolFault: func(point string) {
		if point != "result" {
			return
		}
		select {
		case <-token:
			close(readerHeld)
			<-releaseReader
		default:
		}
	}}
	p, marks := cancelPool(t, h)
	pid := onlyWorker(t, p).proc.Pid

	// Call B: the worker takes it (arrival 1) and runs it at once; the
	// reader holds its result.
	fb := p.Go(context.Background(), markItem{Mark: 1})
	waitFor(t, "the worker taking call B", func() bool { return hold.Load(holdArrived) == 1 })
	hold.Store(holdReleased, 1)
	select {
	case <-readerHeld:
	case <-time.After(stuckAfter):
		t.Fatal("stuck: call B's result never reached the reader")
	}

	// The Map: its first chunk goes to the worker behind B's, and the
	// worker takes it (arrival 2).
	cancel, done := startMap(p)
	defer cancel()
	waitFor(t, "the worker taking the Map's chunk", func() bool { return hold.Load(holdArrived) == 2 })
	w := onlyWorker(t, p)
	p.mu.Lock()
	held, first, rec := len(w.out), w.out[0].job, w.ctl.Load(ctlRec)
	p.mu.Unlock()
	if held != 2 || first.in[0].Mark != 1 || rec != 0 {
		t.Fatalf("the window is not open: the worker holds %d chunks, the first of call %+v, record %#x", held, first.in, rec)
	}

	cancelMap(t, cancel, done)
	hold.Store(holdAt, 0)
	hold.Store(holdReleased, 2)
	close(releaseReader)
	if y, err := fb.Get(context.Background()); err != nil || y != 1 {
		t.Fatalf("call B = %d, %v", y, err)
	}
	if got := checkAfterCancel(t, p, marks); got != pid {
		t.Fatalf("the worker (pid %d) was replaced by pid %d: it should have skipped the chunk, not been killed", pid, got)
	}
}

// TestCancelMapCheckedItem holds the window on the other side of the
// handshake: the worker has recorded the Map's first item and found it
// not cancelled, and is about to run it. Cancelling the Map there must
// kill the worker: released, it would run the item.
func TestCancelMapCheckedItem(t *testing.T) {
	hold := newHold(t, holdChecked)
	p, marks := cancelPool(t, &hooks{workerHold: hold})
	w := onlyWorker(t, p)

	cancel, done := startMap(p)
	defer cancel()
	waitFor(t, "the worker reaching the Map's first item", func() bool { return hold.Load(holdArrived) == 1 })
	cancelMap(t, cancel, done)
	select {
	case <-w.proc.Done():
	case <-time.After(stuckAfter):
		t.Fatal("stuck: the worker about to run an item of the cancelled Map was not killed")
	}
	hold.Store(holdAt, 0)
	hold.Store(holdReleased, 1)
	if got := checkAfterCancel(t, p, marks); got == w.proc.Pid {
		t.Fatal("the Apply ran on the killed worker")
	}
}

// TestCancelMapQueuedBehindRunning: a chunk of the Map waits in a
// worker's task queue behind another call's item, which runs until the
// test lets it finish. Cancelling the Map must not kill the worker (that
// would kill the other call's item), and the worker must skip the chunk
// once that item is done.
func TestCancelMapQueuedBehindRunning(t *testing.T) {
	const gate = 10
	p, marks := cancelPool(t, nil)
	w := onlyWorker(t, p)

	fb := p.Go(context.Background(), markItem{Mark: 1, Gate: gate})
	waitFor(t, "call B's item starting", func() bool { return marks.Load(1) == 1 })
	cancel, done := startMap(p)
	defer cancel()
	waitFor(t, "the Map's chunk queued on the worker", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(w.out) == 2
	})

	cancelMap(t, cancel, done)
	p.mu.Lock()
	killed := w.killed
	p.mu.Unlock()
	if killed {
		t.Fatal("cancelling the Map killed the worker running call B's item")
	}
	marks.Store(gate, 1)
	if y, err := fb.Get(context.Background()); err != nil || y != 1 {
		t.Fatalf("call B = %d, %v", y, err)
	}
	if got := checkAfterCancel(t, p, marks); got != w.proc.Pid {
		t.Fatalf("the worker (pid %d) was replaced by pid %d", w.proc.Pid, got)
	}
}
