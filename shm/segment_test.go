//go:build linux

package shm

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
)

func create(t *testing.T, size int, opts *Options) *Segment {
	t.Helper()
	name := helperproc.Name(t)
	s, err := Create(name, size, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); Remove(name) })
	return s
}

func TestCreateOpen(t *testing.T) {
	s := create(t, 100, nil)
	copy(s.Bytes(), "hello")
	o, err := Open(s.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if got := string(o.Bytes()[:5]); got != "hello" || o.Size() != 100 || o.Kind() != KindBytes {
		t.Fatalf("opened %q size %d kind %v", got, o.Size(), o.Kind())
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := o.Check(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Check after Close = %v", err)
	}
}

func TestCreateExclusive(t *testing.T) {
	s := create(t, 8, nil)
	if _, err := Create(s.Name(), 8, nil); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second Create = %v, want ErrExist", err)
	}
}

func TestMode(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for _, c := range []struct {
		opts *Options
		want os.FileMode
	}{{nil, 0o600}, {&Options{Mode: 0o640}, 0o640}} {
		s := create(t, 8, c.opts)
		st, err := os.Stat(Path(s.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != c.want {
			t.Errorf("mode %v, want %v", st.Mode().Perm(), c.want)
		}
	}
}

// TestOpenRefuses plants what Open must refuse under a segment's name (a
// symlink, a fifo, a directory, nothing, a file of another user) and
// checks each sentinel, and that Create does not replace the planted file.
func TestOpenRefuses(t *testing.T) {
	target := create(t, 8, nil)
	for _, c := range []struct {
		name  string
		plant func(path string) error
		want  error
	}{
		{"symlink", func(p string) error { return os.Symlink(Path(target.Name()), p) }, ErrSymlink},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }, ErrNotRegular},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }, ErrNotRegular},
		{"missing", func(string) error { return nil }, os.ErrNotExist},
		{"other owner", func(p string) error {
			// A valid segment, given to another user (the suite may run as root).
			if err := os.Link(Path(target.Name()), p); err != nil {
				return err
			}
			return os.Lchown(p, 65534, 65534)
		}, ErrOwner},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := helperproc.Name(t)
			if err := c.plant(Path(name)); err != nil {
				if c.name == "other owner" && os.Geteuid() != 0 {
					// A user namespace does not help: one made without
					// root maps only our own uid (more takes newuidmap and
					// /etc/subuid), so every file we can make or chown in
					// it is ours outside it too.
					t.Skipf("ErrOwner needs a file of another user in /dev/shm, and giving one away needs root (run the suite as root to cover it): %v", err)
				}
				t.Fatal(err)
			}
			defer os.Remove(Path(name))
			s, err := Open(name)
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Open = %v, want %v", err, c.want)
			}
			if strings.Count(err.Error(), "shm:") != 1 {
				t.Errorf("Open = %q: the prefix is not there once", err)
			}
			if _, err := Create(name, 8, nil); c.name != "missing" && !errors.Is(err, os.ErrExist) {
				t.Fatalf("Create over a %s = %v, want ErrExist", c.name, err)
			}
			Remove(name)
		})
	}
}

func TestNames(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "a b", string(make([]byte, 201)), "x\x00"} {
		if _, err := Create(name, 8, nil); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("Create(%q) = %v, want ErrInvalid", name, err)
		}
		if _, err := Open(name); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("Open(%q) = %v, want ErrInvalid", name, err)
		}
		if err := Remove(name); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("Remove(%q) = %v, want ErrInvalid", name, err)
		}
	}
	for _, size := range []int{-1, MaxSize + 1} {
		if _, err := Create("ok", size, nil); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("size %d: %v, want ErrInvalid", size, err)
		}
	}
	for _, k := range []Kind{KindAny, kindMax + 1} {
		if _, err := k.NewHeap(8); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("a segment of kind %v: %v, want ErrInvalid", k, err)
		}
	}
}

func TestTruncatedByOtherProcess(t *testing.T) {
	s := create(t, 1<<16, nil)
	if err := helperproc.Command(t, "truncate", s.Name()).Run(); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); !errors.Is(err, ErrSize) {
		t.Fatalf("Check = %v, want ErrSize", err)
	}
	var sink byte
	if err := Guard(func() { sink = s.Bytes()[1<<15] }); !errors.Is(err, ErrFault) {
		t.Fatalf("Guard = %v, want ErrFault", err)
	}
	_ = sink
	if _, err := Open(s.Name()); !errors.Is(err, ErrSize) {
		t.Fatalf("Open of truncated segment = %v, want ErrSize", err)
	}
}

func TestAnonymousSealed(t *testing.T) {
	s, err := CreateAnonymous(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Name() != "" || s.Size() != 4096 {
		t.Fatalf("name %q size %d", s.Name(), s.Size())
	}
	if err := s.file.Truncate(0); err == nil {
		t.Fatal("an anonymous segment could be shrunk")
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

const addsPerProcess = 100_000

// addsAcross is the Adds of each process of TestInt64AcrossProcesses:
// enough for processes on a loaded 2-core machine to overlap.
const addsAcross = 1_000_000

// adderNames names the counter of TestInt64AcrossProcesses, its start line
// and its tally of processes that saw the others' Adds.
func adderNames(name string) [3]string {
	return [3]string{name, name + "-ready", name + "-mixed"}
}

// adder is one process of TestInt64AcrossProcesses: it waits until procs
// processes are at the start line (vs[1]), makes n Adds of 1 to vs[0], and
// adds 1 to vs[2] if one of them found another process's Add since its
// own previous one.
func adder(vs [3]*Int64, procs, n int) error {
	vs[1].Add(1)
	for deadline := time.Now().Add(time.Minute); vs[1].Load() < int64(procs); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d processes at the start line after a minute", vs[1].Load(), procs)
		}
	}
	prev, mixed := int64(-1), false
	for range n {
		v := vs[0].Add(1)
		mixed = mixed || prev >= 0 && v != prev+1
		prev = v
	}
	if mixed {
		vs[2].Add(1)
	}
	return nil
}

// TestInt64AcrossProcesses shows Add atomic between processes: 4
// processes, started together, make addsAcross Adds each to one named
// Int64, overlapping (each sees the others' Adds between its own), and none is
// lost. A scene a loaded machine ran one process at a time is played
// again.
func TestInt64AcrossProcesses(t *testing.T) {
	const procs, attempts = 4, 10
	for attempt := 1; ; attempt++ {
		base := helperproc.Name(t)
		var vs [3]*Int64
		for i, name := range adderNames(base) {
			v, err := CreateInt64(name, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer Remove(name)
			defer v.Close()
			vs[i] = v
		}
		var wg sync.WaitGroup
		for range procs - 1 {
			cmd := helperproc.Command(t, "add", base, strconv.Itoa(addsAcross), strconv.Itoa(procs))
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				if err := cmd.Wait(); err != nil {
					t.Error(err)
				}
			})
		}
		err := adder(vs, procs, addsAcross)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := vs[0].Load(), int64(procs*addsAcross); got != want {
			t.Fatalf("total %d, want %d: Adds were lost", got, want)
		}
		mixed := vs[2].Load()
		if mixed == procs {
			return
		}
		if attempt == attempts {
			t.Fatalf("in %d attempts the processes never all overlapped (last: %d of %d saw another's Adds)", attempts, mixed, procs)
		}
		t.Logf("attempt %d: %d of %d processes saw another's Adds; again", attempt, mixed, procs)
	}
}

// TestInt64OnHeap shows Add atomic between goroutines, on the Go heap.
func TestInt64OnHeap(t *testing.T) {
	seg, err := NewHeap(64)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Int64At(seg, 8)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range addsPerProcess {
				v.Add(1)
			}
		})
	}
	wg.Wait()
	if got := v.Load(); got != 4*addsPerProcess {
		t.Fatalf("total %d, want %d", got, 4*addsPerProcess)
	}
}

func BenchmarkInt64Add(b *testing.B) {
	v, err := NewInt64()
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	b.Run("shm", func(b *testing.B) {
		for b.Loop() {
			v.Add(1)
		}
	})
	b.Run("atomic", func(b *testing.B) {
		var a atomic.Int64
		for b.Loop() {
			a.Add(1)
		}
	})
}

// Open racing Create and Remove sees a whole segment or none, never a half
// made one.
func TestCreateOpenRace(t *testing.T) {
	name := helperproc.Name(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if s, err := Create(name, 4096, nil); err == nil {
				s.Close()
				Remove(name)
			}
		}
	})
	opened := 0
	for range 3000 {
		s, err := Open(name)
		if err == nil {
			opened++
			s.Close()
			continue
		}
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Open during Create = %v", err)
			break
		}
	}
	close(stop)
	wg.Wait()
	Remove(name)
	if opened == 0 {
		t.Fatal("no Open landed while the segment existed: the race was not exercised")
	}
}

// A hostile file claims a size it has not allocated.
func TestOpenSparse(t *testing.T) {
	s := create(t, 64, nil)
	path := Path(s.Name())
	for _, size := range []int64{1 << 20, 1 << 42} {
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(s.Name()); !errors.Is(err, ErrSize) {
			t.Errorf("Open of a sparse %d-byte file = %v, want ErrSize", size, err)
		}
	}
}

func TestUseAfterClose(t *testing.T) {
	v, err := NewInt64()
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	other, err := NewInt64()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := Guard(func() { v.Store(0x4141) }); !errors.Is(err, ErrFault) {
		t.Fatalf("Store after Close = %v, want ErrFault", err)
	}
	if other.Load() != 0 {
		t.Fatal("a stale value wrote into another segment")
	}
}
