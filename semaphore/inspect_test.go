package semaphore

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/shm"
)

// heap returns a heap segment of size bytes (the race detector sees the
// inspectors' loads there).
func heap(t *testing.T, size int) *shm.Segment {
	t.Helper()
	seg, err := shm.NewHeap(size)
	if err != nil {
		t.Fatal(err)
	}
	return seg
}

// selfHolder is this process's liveness token, as an inspector reports it.
func selfHolder(t *testing.T) shm.Holder {
	tok, err := liveness.Self()
	if err != nil {
		t.Fatal(err)
	}
	return shm.Holder{Token: shm.Token(tok), State: "alive"}
}

// Each inspector reads its object's state, and changes none of its bytes.
func TestInspectors(t *testing.T) {
	ctx := t.Context()
	me := selfHolder(t)
	unchanged := func(seg *shm.Segment, inspect func() error) {
		t.Helper()
		before := bytes.Clone(seg.Bytes())
		if err := inspect(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, seg.Bytes()) {
			t.Fatal("an inspector changed the object's memory")
		}
	}

	mseg := heap(t, MutexSize)
	m, _ := MutexAt(mseg, 0)
	if st, err := InspectMutex(mseg.Bytes()); err != nil || st.Holder != nil || st.String() != "free" {
		t.Errorf("free mutex: %v, %v", st, err)
	}
	m.Lock()
	unchanged(mseg, func() error {
		st, err := InspectMutex(mseg.Bytes())
		if st.Holder == nil || *st.Holder != me || st.Inconsistent || st.NotRecoverable || len(st.Holders()) != 1 {
			t.Errorf("held mutex: %+v", st)
		}
		return err
	})
	m.Unlock()

	sseg := heap(t, SemaphoreSize(&SemaphoreOptions{Holders: 4}))
	s, err := InitSemaphoreAt(sseg, 0, 3, &SemaphoreOptions{Holders: 4, Bounded: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Acquire(ctx)
	s.Acquire(ctx)
	unchanged(sseg, func() error {
		st, err := InspectSemaphore(sseg.Bytes())
		want := []PermitHolder{{me, 2}}
		if st.Value != 1 || st.Base != 3 || !st.Bounded || st.Slots != 4 || len(st.Holding) != 1 || st.Holding[0] != want[0] || st.Guard.Holder != nil {
			t.Errorf("semaphore with 2 of 3 permits taken: %+v", st)
		}
		if hs := st.Holders(); len(hs) != 1 || hs[0] != me {
			t.Errorf("semaphore Holders: %v", hs)
		}
		return err
	})

	eseg := heap(t, EventSize)
	e, _ := EventAt(eseg, 0)
	e.Set()
	e.Clear()
	e.Set()
	unchanged(eseg, func() error {
		st, err := InspectEvent(eseg.Bytes())
		if st != (EventState{Set: true, Sets: 2}) {
			t.Errorf("event set twice: %+v", st)
		}
		return err
	})

	bseg := heap(t, BarrierSize(3))
	b, _ := InitBarrierAt(bseg, 0, 3)
	done := make(chan error)
	go func() { _, err := b.Wait(ctx); done <- err }()
	for {
		st, err := InspectBarrier(bseg.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if st.Waiting == 1 {
			if st.Parties != 3 || st.Broken || st.Generation != 0 || len(st.Arrived) != 1 || st.Arrived[0] != me {
				t.Errorf("barrier with one party waiting: %+v", st)
			}
			break
		}
	}
	b.Abort()
	if err := <-done; !errors.Is(err, ErrBroken) {
		t.Fatalf("Wait after Abort: %v", err)
	}
	if st, _ := InspectBarrier(bseg.Bytes()); !st.Broken {
		t.Errorf("aborted barrier: %+v", st)
	}

	cseg := heap(t, ConditionSize)
	c, _ := ConditionAt(cseg, 0)
	c.Lock()
	go func() { c.Lock(); done <- errors.Join(c.Wait(ctx), c.Unlock()) }()
	c.Notify(1) // nobody waits: no signal, but the sequence stays
	c.Unlock()
	for {
		st, err := InspectCondition(cseg.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if st.Waiters == 1 && st.Mutex.Holder == nil {
			break
		}
	}
	c.Lock() // the waiter sleeps on the sequence word, touching nothing
	unchanged(cseg, func() error {
		st, err := InspectCondition(cseg.Bytes())
		if st.Waiters != 1 || st.Signals != 0 || st.Sequence != 0 || st.Mutex.Holder == nil || *st.Mutex.Holder != me || len(st.Holders()) != 1 {
			t.Errorf("condition waited on, its mutex held: %+v", st)
		}
		return err
	})
	c.Notify(1)
	c.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st, _ := InspectCondition(cseg.Bytes()); st.Waiters != 0 || st.Signals != 0 || st.Sequence != 1 || st.Mutex.Holder != nil {
		t.Errorf("condition after its waiter took the signal: %+v", st)
	}
	u64(cseg.Bytes(), offCondCounts).Store(joinCounts(1, 2))
	if _, err := InspectCondition(cseg.Bytes()); !errors.Is(err, ErrCorrupt) {
		t.Errorf("condition with 2 signals for 1 waiter: %v, want ErrCorrupt", err)
	}

	lseg := heap(t, LockedSize(20, 2))
	l, err := InitLockedAt[int16](lseg, 0, 20)
	if err != nil {
		t.Fatal(err)
	}
	l.Array().Store(19, -3)
	l.Array().Store(1, 5)
	l.Mutex().Lock()
	unchanged(lseg, func() error {
		st, err := InspectLocked(lseg.Bytes())
		if st.Kind != shm.KindInt16Array || st.Len != 20 || len(st.Values) != shm.MaxReportedElems || st.Values[1] != int16(5) ||
			st.Mutex.Holder == nil || *st.Mutex.Holder != me || len(st.Holders()) != 1 {
			t.Errorf("locked int16 array of 20, held: %+v", st)
		}
		return err
	})
	l.Mutex().Unlock()
}

// Memory that holds no object is ErrCorrupt, never a panic.
func FuzzInspectors(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 128))
	f.Fuzz(func(t *testing.T, b []byte) {
		seg, err := shm.NewHeap(len(b))
		if err != nil {
			t.Skip()
		}
		copy(seg.Bytes(), b)
		p := seg.Bytes()
		for _, inspect := range []func([]byte) (shm.Report, error){
			func(p []byte) (shm.Report, error) { return InspectMutex(p) },
			func(p []byte) (shm.Report, error) { return InspectSemaphore(p) },
			func(p []byte) (shm.Report, error) { return InspectEvent(p) },
			func(p []byte) (shm.Report, error) { return InspectBarrier(p) },
			func(p []byte) (shm.Report, error) { return InspectCondition(p) },
			func(p []byte) (shm.Report, error) { return InspectLocked(p) },
		} {
			if _, err := inspect(p); err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("inspect: %v, want nil or ErrCorrupt", err)
			}
		}
	})
}
