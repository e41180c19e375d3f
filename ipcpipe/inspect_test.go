package ipcpipe

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ipckit/ipckit/shm"
)

// Inspect reads each direction's positions, records and sleepers and each
// end's holder and closed flag as they are, and changes none of the bytes.
func TestInspect(t *testing.T) {
	ctx := t.Context()
	a, b := heapPipe(t, true, &Options{Size: 1024})
	for _, m := range []string{"a", "bb", "ccccccccc"} { // 16, 16 and 24 ring bytes
		if err := a.Send(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(ctx, []byte("z")); err != nil {
		t.Fatal(err)
	}
	mem := a.Segment().Bytes()
	before := bytes.Clone(mem)
	st, err := Inspect(mem)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, mem) {
		t.Fatal("Inspect changed the pipe's memory")
	}
	if !st.Duplex || st.Ring != 1024 || st.MaxMsg != a.MaxMsg() || len(st.Dirs) != 2 {
		t.Fatalf("Inspect: %+v", st)
	}
	want := []DirState{{Dir: 0, Sent: 56, Taken: 16, Bytes: 40, Messages: 2}, {Dir: 1, Sent: 16, Bytes: 16, Messages: 1}}
	for i, d := range st.Dirs {
		if d != want[i] {
			t.Errorf("direction %d: %+v, want %+v", i, d, want[i])
		}
	}
	for e, end := range st.Ends {
		if end.Owner.State != "alive" || end.Owner.Token != shm.Token(a.self) || end.Closed || end.InTransit {
			t.Errorf("end %d: %+v", e, end)
		}
	}
	if hs := st.Holders(); len(hs) != 2 {
		t.Errorf("Holders: %v", hs)
	}
	if c := st.Counters(); c["Sent0"] != 56 || c["Taken0"] != 16 || len(c) != 4 {
		t.Errorf("Counters: %v", c)
	}
	b.Close()
	if st, _ := Inspect(mem); !st.Ends[1].Closed || st.Ends[0].Closed {
		t.Errorf("after end 1's Close: %+v", st.Ends)
	}

	r, _ := heapPipe(t, false, nil)
	if st, err := Inspect(r.Segment().Bytes()); err != nil || st.Duplex || len(st.Dirs) != 1 || st.Dirs[0].Dir != 1 {
		t.Errorf("one-way pipe: %+v, %v", st, err)
	}
}

// Inspect never panics, and every error it returns wraps ErrCorrupt.
func FuzzInspect(f *testing.F) {
	a, b, err := NewHeap(true, &Options{Size: 64})
	if err != nil {
		f.Fatal(err)
	}
	a.Send(f.Context(), []byte("hello"))
	f.Add(bytes.Clone(a.Segment().Bytes()))
	a.Close()
	b.Close()
	f.Fuzz(func(t *testing.T, p []byte) {
		seg, err := shm.KindPipe.NewHeap(max(len(p), 1))
		if err != nil {
			t.Skip()
		}
		defer seg.Close()
		copy(seg.Bytes(), p)
		if _, err := Inspect(seg.Bytes()); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Inspect: %v, want nil or ErrCorrupt", err)
		}
	})
}
