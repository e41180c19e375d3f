package ipctopic

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ipckit/ipckit/shm"
)

// Inspect reads a topic's configuration, counters, subscribers with their
// cursors and lag, and the publisher lock's holder, and changes none of
// its bytes.
func TestInspect(t *testing.T) {
	tp := heapTopic(t, &Options{Slots: 8, MaxMsg: 32, Subscribers: 4, Policy: Overwrite})
	ctx := t.Context()
	s0, s1 := subscribe(t, tp), subscribe(t, tp)
	for _, m := range []string{"a", "bb", "ccc"} {
		if err := tp.Publish(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s1.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	s0.Close()
	s2 := subscribe(t, tp) // takes slot 0 again, at message 3
	_ = s2
	if err := tp.lock(ctx); err != nil {
		t.Fatal(err)
	}
	before := bytes.Clone(tp.seg.Bytes())
	st, err := Inspect(tp.seg.Bytes())
	if !bytes.Equal(before, tp.seg.Bytes()) {
		t.Fatal("Inspect changed the topic's memory")
	}
	tp.plock.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if st.Policy != "overwrite" || st.Slots != 8 || st.MaxMsg != 32 || st.Shutdown {
		t.Errorf("Inspect's configuration: %+v", st)
	}
	if want := (Stats{Published: 3, Subscribers: 2}); st.Stats != want {
		t.Errorf("Inspect's Stats: %+v, want %+v", st.Stats, want)
	}
	me := shm.HolderOf(uint64(tp.plock.Token()))
	if me.State != "alive" {
		t.Fatalf("this process's holder: %v", me)
	}
	want := []SubscriberState{{Slot: 0, Owner: me, Cursor: 3}, {Slot: 1, Owner: me, Cursor: 1, Lag: 2}}
	if len(st.Subscribers) != 2 || st.Subscribers[0] != want[0] || st.Subscribers[1] != want[1] {
		t.Errorf("Inspect's subscribers: %+v, want %+v", st.Subscribers, want)
	}
	if p := st.Publisher; p.Holder == nil || *p.Holder != me {
		t.Errorf("publisher lock held by this process: %+v", p)
	}
	if hs := st.Holders(); len(hs) != 3 || hs[0] != me || hs[1] != me || hs[2] != me {
		t.Errorf("Holders: %v", hs)
	}
	if c := st.Counters(); c["Published"] != 3 || len(c) != 4 {
		t.Errorf("Counters: %v", c)
	}
	tp.Shutdown()
	if st, _ := Inspect(tp.seg.Bytes()); !st.Shutdown || st.Publisher.Holder != nil {
		t.Errorf("Inspect after Shutdown: %+v", st)
	}
}

// Inspect of memory that holds no topic is ErrCorrupt, never a panic.
func TestInspectCorrupt(t *testing.T) {
	tp := heapTopic(t, &Options{Slots: 4, MaxMsg: 8, Subscribers: 2})
	b := bytes.Clone(tp.seg.Bytes())
	for _, p := range [][]byte{nil, b[:ctlSize-1], b[:len(b)-1]} {
		if _, err := Inspect(p); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Inspect of %d of %d bytes: %v, want ErrCorrupt", len(p), len(b), err)
		}
	}
	b[offPLock] = 0xff // a lock word no holder can have
	b[offPLock+7] = 0xff
	if _, err := Inspect(b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Inspect of a corrupt lock word: %v, want ErrCorrupt", err)
	}
}
