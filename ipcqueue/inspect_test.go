package ipcqueue

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/ipckit/ipckit/shm"
)

// Inspect reads a queue's depth, bytes, counters, locks and sleepers as
// they are, and changes none of its bytes.
func TestInspect(t *testing.T) {
	q := heapQueue(t, 1024, nil)
	ctx := t.Context()
	for _, m := range []string{"a", "bb", "ccccccccc"} { // 16, 16 and 24 ring bytes
		if err := q.Put(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.clock.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	before := bytes.Clone(q.seg.Bytes())
	st, err := Inspect(q.seg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, q.seg.Bytes()) {
		t.Fatal("Inspect changed the queue's memory")
	}
	want := QueueState{Capacity: 1016, MaxMsg: q.MaxMsg(), Messages: 2, Bytes: 40, Stats: Stats{Puts: 3, Gets: 1}}
	cons := st.Consumer
	st.Consumer = shm.LockState{}
	if st != want {
		t.Errorf("Inspect: %+v, want %+v", st, want)
	}
	if cons.Holder == nil || cons.Holder.State != "alive" || cons.Holder.Token != shm.Token(q.clock.Token()) || cons.String() != "held by "+cons.Holder.String() {
		t.Errorf("consumer lock held by this process: %+v", cons)
	}
	if hs := (QueueState{Consumer: cons}).Holders(); len(hs) != 1 || hs[0] != *cons.Holder {
		t.Errorf("Holders: %v", hs)
	}
	q.clock.Unlock()
	if c := st.Counters(); c["Puts"] != 3 || c["Gets"] != 1 || len(c) != 5 {
		t.Errorf("Counters: %v", c)
	}
	q.Shutdown()
	if st, _ := Inspect(q.seg.Bytes()); !st.Shutdown {
		t.Error("Inspect after Shutdown: not shut down")
	}
}

// Inspect runs beside producers and consumers (the race detector watches
// its loads on the heap queue), and never sees more messages than were
// put, nor a depth over the capacity.
func TestInspectConcurrent(t *testing.T) {
	q := heapQueue(t, 256, nil)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	const n = 2000
	wg.Go(func() {
		for range n {
			q.Put(ctx, []byte("message"))
		}
	})
	wg.Go(func() {
		for range n {
			q.Get(ctx)
		}
	})
	for range 500 {
		st, err := Inspect(q.seg.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if st.Messages > n || st.Bytes > uint64(st.Capacity) || st.Stats.Gets > st.Stats.Puts {
			t.Fatalf("impossible state: %+v", st)
		}
	}
	wg.Wait()
	cancel()
}

// A payload that holds no queue is ErrCorrupt, whatever its bytes.
func FuzzInspect(f *testing.F) {
	q, err := NewHeap(256, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.Clone(q.seg.Bytes()))
	q.Close()
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		seg, err := shm.KindQueue.NewHeap(len(b)) // 8-aligned, as a mapping is
		if err != nil {
			t.Skip()
		}
		copy(seg.Bytes(), b)
		if _, err := Inspect(seg.Bytes()); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Inspect: %v, want nil or ErrCorrupt", err)
		}
	})
}
