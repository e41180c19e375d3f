//go:build linux

package spawn

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/shm"
)

// itask is the internal tests' pool task.
var itask = RegisterTask("pool-internal", func(ctx context.Context, x int) (int, error) { return x + 1, nil })

// TestPoolShutdownAfterWatchers: the goroutine that posts a worker's death
// on the result queue may still be inside Put (after the commit the reader
// acts on) when the reader has finished; Shutdown must not release the
// queue before that goroutine is done. A fault hook holds the goroutine
// right after its Put, as a preemption there would, then touches the
// queue.
func TestPoolShutdownAfterWatchers(t *testing.T) {
	var held, after atomic.Bool
	var p *Pool[int, int]
	ready := make(chan struct{})
	fault := func(point string) {
		if point != "watch-posted" {
			return
		}
		<-ready
		held.Store(true)
		time.Sleep(200 * time.Millisecond)
		p.results.Len() // the mapping must still be there
		after.Store(true)
	}
	var err error
	p, err = newPool(context.Background(), itask, &PoolOptions{Workers: 1}, &hooks{poolFault: fault})
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	if y, err := p.Apply(context.Background(), 1); err != nil || y != 2 {
		t.Fatalf("Apply = %d, %v", y, err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !held.Load() || !after.Load() {
		t.Fatalf("Shutdown returned while a watcher was still inside its post (held %v, done %v)", held.Load(), after.Load())
	}
}

// waitReady waits until p has n workers, all of them ready (initialized)
// and none of them in old, and returns their pids.
func waitReady(t *testing.T, p *Pool[int, int], n int, old map[int]bool) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		var pids []int
		for _, w := range p.workers {
			if w.ready && !old[w.proc.Pid] {
				pids = append(pids, w.proc.Pid)
			}
		}
		broken, all := p.life.broken, len(p.workers)
		p.mu.Unlock()
		if broken != nil {
			t.Fatalf("the pool broke: %v", broken)
		}
		if len(pids) == n && all == n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d workers ready after 10 s", len(pids), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPoolIdleWorkersKilled: workers SIGKILLed while idle (initialized,
// no task) are replaced; they are not start failures, so killing every
// worker, round after round, never breaks the pool.
func TestPoolIdleWorkersKilled(t *testing.T) {
	const n = 3
	p, err := NewPool(context.Background(), itask, &PoolOptions{Workers: n})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	seen := map[int]bool{}
	for range maxStartFails + 1 {
		for _, pid := range waitReady(t, p, n, seen) {
			seen[pid] = true
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if y, err := p.Apply(context.Background(), 4); err != nil || y != 5 {
		t.Fatalf("Apply after killing idle workers = %d, %v", y, err)
	}
	waitReady(t, p, n, seen)
	if pids := p.Pids(); len(pids) != n {
		t.Fatalf("Pids = %v, want %d workers", pids, n)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
}

var isleep = Register("pool-internal-sleep", func(ctx context.Context, d time.Duration) error {
	time.Sleep(d)
	return nil
})

// TestCancelJobKillsOnlyItsWorker: a worker holds a chunk of call A (run,
// its results not yet read) and runs an item of call B's chunk;
// cancelling A must not kill it (that would kill B's item) but mark A's
// chunk skipped; cancelling B must kill it.
func TestCancelJobKillsOnlyItsWorker(t *testing.T) {
	p, a, b := poolOfTwoJobs()
	w := fakeWorker(t, p, 1)
	proc := w.proc
	w.out = []*chunk[int, int]{{id: 7, job: a, n: 1, worker: w}, {id: 8, job: b, n: 1, worker: w}}
	w.ctl.Store(ctlRec, recWord(8, 1)) // inside B's item

	p.cancelJob(a, context.Canceled)
	if !cancelled(w.ctl, 7) || cancelled(w.ctl, 8) {
		t.Fatal("cancelling call A did not mark its chunk (alone) cancelled")
	}
	select {
	case <-proc.Done():
		t.Fatal("cancelling call A killed the worker running call B's item")
	case <-time.After(100 * time.Millisecond):
	}
	if w.killed {
		t.Fatal("cancelling call A marked B's worker killed")
	}
	p.cancelJob(b, context.Canceled)
	select {
	case <-proc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling call B left its worker running")
	}
	if !w.killed {
		t.Fatal("the worker killed for B is not marked killed")
	}
}

// Workers killed by a signal as soon as they start, before they report
// ready, are not start failures: the pool goes on replacing them.
func TestPoolWorkersKilledBeforeReady(t *testing.T) {
	const n = 2
	p, err := NewPool(context.Background(), itask, &PoolOptions{Workers: n})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	seen := map[int]bool{}
	for range 2*maxStartFails + 1 {
		deadline := time.Now().Add(5 * time.Second)
		var fresh []int
		for len(fresh) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no fresh worker after %v; Pids = %v", 5*time.Second, p.Pids())
			}
			for _, pid := range p.Pids() {
				if !seen[pid] {
					fresh = append(fresh, pid)
				}
			}
			time.Sleep(100 * time.Microsecond)
		}
		for _, pid := range fresh {
			seen[pid] = true
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if y, err := p.Apply(context.Background(), 4); err != nil || y != 5 {
		t.Fatalf("Apply after killing starting workers = %d, %v", y, err)
	}
}

// TestCancelJobSkipsQueuedChunks: a worker inside no item (still
// starting, between chunks, or between two items) is not killed when a
// call is cancelled, whether the call's chunk is its next or queued
// behind another call's: the chunk is marked, and the worker skips it
// (TestCancelMapTakenChunk runs that side). Its slots are reused once the
// chunks they name are gone.
func TestCancelJobSkipsQueuedChunks(t *testing.T) {
	p, a, b := poolOfTwoJobs()
	ws := []*worker[int, int]{fakeWorker(t, p, 1), fakeWorker(t, p, 2)}
	ws[0].out = []*chunk[int, int]{{id: 7, job: a, n: 1, worker: ws[0]}, {id: 8, job: b, n: 1, worker: ws[0]}}
	ws[1].out = []*chunk[int, int]{{id: 9, job: b, n: 1, worker: ws[1]}, {id: 10, job: a, n: 1, worker: ws[1]}}
	ws[0].ctl.Store(ctlRec, recWord(7, 0)) // between two items of A's chunk
	ws[1].ctl.Store(ctlRec, recWord(9, 0)) // between two items of B's chunk

	p.cancelJob(a, context.Canceled)
	for _, w := range ws {
		select {
		case <-w.proc.Done():
			t.Fatalf("cancelling call A killed worker %d, which runs none of its items", w.serial)
		case <-time.After(100 * time.Millisecond):
		}
		if w.killed {
			t.Fatalf("worker %d is marked killed", w.serial)
		}
	}
	if !cancelled(ws[0].ctl, 7) || cancelled(ws[0].ctl, 8) || !cancelled(ws[1].ctl, 10) || cancelled(ws[1].ctl, 9) {
		t.Fatal("the cancel slots do not name exactly call A's chunks")
	}
	// Worker 1 has reported chunks 7 (skipped) and 8 and holds two chunks
	// of call C; worker 2 still holds 10 and one chunk of C. Cancelling C
	// reuses the slot of 7, which is gone, and keeps that of 10.
	c := newJob[int, int]([]int{3, 4, 5}, false)
	p.jobs[c] = struct{}{}
	ws[0].out = []*chunk[int, int]{{id: 12, job: c, n: 1, worker: ws[0]}, {id: 13, job: c, n: 1, worker: ws[0]}}
	ws[1].out = []*chunk[int, int]{ws[1].out[1], {id: 14, job: c, n: 1, worker: ws[1]}}
	p.cancelJob(c, context.Canceled)
	if !cancelled(ws[0].ctl, 12) || !cancelled(ws[0].ctl, 13) {
		t.Fatal("the slot of a chunk that is gone was not reused")
	}
	if !cancelled(ws[1].ctl, 10) || !cancelled(ws[1].ctl, 14) {
		t.Fatal("a cancel slot in use was reused")
	}
	if ws[0].killed || ws[1].killed {
		t.Fatal("a worker is marked killed")
	}
}

// poolOfTwoJobs returns a bare pool (no process, no queue) with two calls
// under way, for the tests of cancelJob.
func poolOfTwoJobs() (p *Pool[int, int], a, b *job[int, int]) {
	p = &Pool[int, int]{workers: map[uint64]*worker[int, int]{}, jobs: map[*job[int, int]]struct{}{}}
	a, b = newJob[int, int]([]int{1}, false), newJob[int, int]([]int{2}, false)
	p.jobs[a], p.jobs[b] = struct{}{}, struct{}{}
	return p, a, b
}

// fakeWorker adds to p a worker with the given serial: a sleeping child
// and a control array, both gone at the end of the test.
func fakeWorker(t *testing.T, p *Pool[int, int], serial uint64) *worker[int, int] {
	t.Helper()
	proc, err := Start(context.Background(), isleep, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Kill()
		proc.Wait()
	})
	ctl, err := shm.NewArray[int64](ctlLen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	w := &worker[int, int]{serial: serial, proc: proc, ctl: ctl}
	p.workers[serial] = w
	return w
}

// TestImapMemoryBounded: a long streaming call holds slots only for its
// read-ahead window, not one per item read: the job's slices are
// compacted as the iterator yields, ordered or not.
func TestImapMemoryBounded(t *testing.T) {
	p, err := NewPool(context.Background(), itask, &PoolOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n, chunk = 20000, 50
	// The window: read-ahead beyond the items yielded (for an unordered
	// call, beyond the oldest not yet yielded, however slow it is: a
	// bound on that lag held only when the machine was quiet), a chunk
	// read before the feeder looks, and the slots compact leaves until
	// they are half.
	bound := 2 * (p.readAhead(chunk) + minCompact + chunk)
	held := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		most := 0
		for j := range p.jobs {
			most = max(most, len(j.in), len(j.outs))
		}
		return most
	}
	xs := func(yield func(int) bool) {
		for k := range n {
			if !yield(k) {
				return
			}
		}
	}
	for _, unordered := range []bool{false, true} {
		most, got := 0, 0
		check := func(i, y int, err error) {
			if err != nil || y != i+1 {
				t.Fatalf("unordered=%v item %d: %d, %v", unordered, i, y, err)
			}
			got++
			if got%97 == 0 {
				most = max(most, held())
			}
		}
		if unordered {
			for i, r := range p.Chunked(chunk).ImapUnordered(t.Context(), xs) {
				check(i, r.Value, r.Err)
			}
		} else {
			for y, err := range p.Chunked(chunk).Imap(t.Context(), xs) {
				check(got, y, err)
			}
		}
		if got != n || most > bound {
			t.Fatalf("unordered=%v: %d results; held up to %d slots, want at most %d", unordered, got, most, bound)
		}
	}
}
