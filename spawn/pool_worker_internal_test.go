//go:build linux

package spawn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/shm"
)

// TestWorkerLoopHeap runs the pool's worker loop on goroutines over heap
// queues and heap in-flight records, so that the race detector sees every
// shared access of the wire protocol: the parent's side (task streams,
// per-worker result decoders) is played by the test. A few hundred items in
// chunks of varied sizes, some failing, some panicking; the in-flight record
// names the running item; MaxTasks retires one worker; closing the task
// queues ends the others.
func TestWorkerLoopHeap(t *testing.T) {
	const (
		workers = 3
		items   = 600
	)
	ctx := t.Context()
	results, err := ipcqueue.NewHeap(1<<20, &ipcqueue.Options{MaxMsg: 1 << 18})
	if err != nil {
		t.Fatal(err)
	}
	defer results.Close()

	type heapWorker struct {
		setup workerSetup
		seg   *shm.Segment
		enc   streamEnc
		sent  int
	}
	var ctls [workers]*shm.Int64Array
	// fn checks, from inside the task, that its worker's in-flight record
	// names it (pos+1 within its chunk is carried in the item).
	fn := func(_ context.Context, x [3]int) (int, error) {
		w, pos, v := x[0], x[1], x[2]
		if got := ctls[w].Load(ctlRec); recPos(got) != pos+1 || recChunk(got) == 0 {
			return 0, fmt.Errorf("in-flight record %#x, want position %d", got, pos+1)
		}
		switch {
		case v%97 == 13:
			panic(fmt.Sprintf("panic %d", v))
		case v%89 == 7:
			return 0, fmt.Errorf("fail %d", v)
		}
		return v * v, nil
	}
	ws := make([]*heapWorker, workers)
	for i := range ws {
		tasks, err := ipcqueue.NewHeap(1<<16, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tasks.Close()
		seg, err := shm.NewHeap(64)
		if err != nil {
			t.Fatal(err)
		}
		defer seg.Close()
		if ctls[i], err = shm.ArrayAt[int64](seg, 0, ctlLen); err != nil {
			t.Fatal(err)
		}
		ws[i] = &heapWorker{seg: seg, setup: workerSetup{
			Tasks: tasks, Results: results, Ctl: ctls[i], Serial: uint64(i + 1),
		}}
	}
	ws[0].setup.MaxTasks = 150 // retires after its chunks reach 150 items

	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i, w := range ws {
		wg.Go(func() { errs[i] = workerLoop(ctx, fn, &w.setup, nil) })
	}

	// Send chunks round robin; chunk k has 1 + k%7 items.
	type chunkInfo struct {
		worker, lo, n int
	}
	chunks := map[uint64]chunkInfo{}
	var id uint64
	for lo, k := 0, 0; lo < items; k++ {
		n := min(1+k%7, items-lo)
		wi := k % workers
		w := ws[wi]
		if w.setup.MaxTasks > 0 && w.sent >= w.setup.MaxTasks {
			wi = 1 + k%(workers-1)
			w = ws[wi]
		}
		in := make([][3]int, n)
		for p := range n {
			in[p] = [3]int{wi, p, lo + p}
		}
		id++
		msg, err := w.enc.encode(&taskMsg[[3]int]{ID: id, Items: in})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.setup.Tasks.Put(ctx, msg); err != nil {
			t.Fatal(err)
		}
		chunks[id] = chunkInfo{wi, lo, n}
		w.sent += n
		lo += n
	}

	got := make([]bool, items)
	decs := map[uint64]*streamDec{}
	for len(chunks) > 0 {
		msg, err := results.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		serial := binary.LittleEndian.Uint64(msg)
		if msg[serialLen] == msgReady {
			if len(msg) != serialLen+1 {
				t.Fatalf("ready message of %d bytes", len(msg))
			}
			continue
		}
		d := decs[serial]
		if d == nil {
			d = new(streamDec)
			decs[serial] = d
		}
		var m resultMsg[int]
		if err := d.decode(msg[serialLen], msg[serialLen+1:], &m); err != nil {
			t.Fatal(err)
		}
		c, ok := chunks[m.ID]
		if !ok || uint64(c.worker+1) != serial || m.Lo != 0 || m.N != c.n {
			t.Fatalf("result %+v for chunk %+v (known %v) from worker %d", m, c, ok, serial)
		}
		delete(chunks, m.ID)
		failed := map[int]itemErr{}
		for _, e := range m.Errs {
			failed[e.Pos] = e
		}
		for p := range c.n {
			v := c.lo + p
			got[v] = true
			e, bad := failed[p]
			switch {
			case v%97 == 13:
				if !bad || !e.Panic || e.Msg != fmt.Sprintf("panic %d", v) {
					t.Errorf("item %d: %+v, want its panic", v, e)
				}
			case v%89 == 7:
				if !bad || e.Panic || e.Msg != fmt.Sprintf("fail %d", v) {
					t.Errorf("item %d: %+v, want its error", v, e)
				}
			case bad:
				t.Errorf("item %d failed: %s", v, e.Msg)
			case m.Outs[p] != v*v:
				t.Errorf("item %d = %d", v, m.Outs[p])
			}
		}
	}
	for i, w := range ws {
		w.setup.Tasks.Shutdown()
		if r := ctls[i].Load(ctlRec); r != 0 {
			t.Errorf("worker %d: in-flight record %d after its last item", i, r)
		}
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}
	for v, ok := range got {
		if !ok {
			t.Fatalf("item %d never reported", v)
		}
	}
	if _, ok, err := results.TryGet(); ok || err != nil && !errors.Is(err, ipcqueue.ErrShutdown) {
		t.Fatalf("a stray result: %v %v", ok, err)
	}
}

// TestDispatchPrefersLastReporter: among equally loaded workers, a chunk
// goes to the one that reported last (still spinning on its queue), so a
// trickle of single tasks keeps one worker hot rather than waking each
// worker in turn from a futex sleep.
func TestDispatchPrefersLastReporter(t *testing.T) {
	p := &Pool[int, int]{workers: map[uint64]*worker[int, int]{}, jobs: map[*job[int, int]]struct{}{}}
	for serial := uint64(1); serial <= 4; serial++ {
		q, err := ipcqueue.NewHeap(1<<12, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		p.workers[serial] = &worker[int, int]{serial: serial, tasks: q}
	}
	for round, last := range []uint64{3, 1, 4, 2, 3} {
		p.reports++
		p.workers[last].lastReport = p.reports
		j := newJob[int, int]([]int{round}, false)
		p.pending = p.appendChunk(nil, j, 0, 1)
		p.dispatch()
		for serial, w := range p.workers {
			if (len(w.out) == 1) != (serial == last) {
				t.Fatalf("round %d: worker %d holds %d chunks; want the chunk at worker %d, which reported last", round, serial, len(w.out), last)
			}
			w.out = nil
		}
	}
}
