package handoff

import (
	"errors"
	"os"
	"testing"
)

func TestCollect(t *testing.T) {
	a, b := os.Stdin, os.Stdout
	files, err := Collect(func() error {
		for _, c := range []struct {
			f    *os.File
			want int
		}{{a, 0}, {b, 1}, {a, 0}} {
			if i, err := Add(c.f); err != nil || i != c.want {
				t.Errorf("Add = %d, %v; want %d", i, err, c.want)
			}
		}
		// Another goroutine's encode is not part of this collection.
		done := make(chan error)
		go func() { _, err := Add(b); done <- err }()
		if err := <-done; !errors.Is(err, ErrNoTransport) {
			t.Errorf("Add from another goroutine during Collect = %v, want ErrNoTransport", err)
		}
		return nil
	})
	if err != nil || len(files) != 2 || files[0] != a || files[1] != b {
		t.Fatalf("Collect = %v, %v", files, err)
	}
	if _, err := Add(a); !errors.Is(err, ErrNoTransport) {
		t.Fatalf("Add outside Collect = %v", err)
	}
	want := errors.New("encode failed")
	if _, err := Collect(func() error { return want }); err != want {
		t.Fatalf("Collect's error = %v", err)
	}
}

func TestAddClosed(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	Collect(func() error {
		if _, err := Add(f); !errors.Is(err, os.ErrClosed) {
			t.Errorf("Add of a closed file = %v, want ErrClosed", err)
		}
		return nil
	})
}

func TestInherited(t *testing.T) {
	SetInherited([]*os.File{os.Stdin})
	defer SetInherited(nil)
	if f, err := File(0); err != nil || f != os.Stdin {
		t.Fatalf("File(0) = %v, %v", f, err)
	}
	for _, i := range []int{-1, 1} {
		if _, err := File(i); !errors.Is(err, ErrNoFile) {
			t.Errorf("File(%d) = %v, want ErrNoFile", i, err)
		}
	}
}
