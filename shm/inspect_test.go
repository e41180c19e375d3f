//go:build linux

package shm

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
)

// Inspect reads a named segment's file, header and state, and InspectFD an
// anonymous one through the descriptor a process holds.
func TestInspect(t *testing.T) {
	name := helperproc.Name(t)
	v, err := CreateInt64(name, &Options{Mode: 0o640})
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer v.Close()
	v.Add(7)
	info, err := Inspect(name)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(Path(name))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if info.Name != name || info.Kind != KindInt64 || info.Size != headerSize+8 || info.Mode != 0o640 ||
		info.UID != uint32(os.Geteuid()) || info.Dev != uint64(st.Dev) || info.Ino != st.Ino ||
		info.CreatorPid != uint32(os.Getpid()) || !info.CreatorAlive || info.Created.IsZero() {
		t.Errorf("Inspect(%q) = %+v", name, info)
	}
	if vs, ok := info.Report.(ValuesState); !ok || vs.Len != 1 || !slices.Equal(vs.Values, []any{int64(7)}) {
		t.Errorf("report on an Int64 holding 7: %#v", info.Report)
	}

	a, err := NewArray[float64](20)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Store(1, 2.5)
	found := false
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, e := range fds {
		link, _ := os.Readlink("/proc/self/fd/" + e.Name())
		if !IsAnonymousLink(link) {
			continue
		}
		fd, _ := strconv.Atoi(e.Name())
		info, err := InspectFD(os.Getpid(), fd)
		if err != nil {
			t.Fatal(err)
		}
		if info.Kind == KindFloat64Array {
			vs := info.Report.(ValuesState)
			found = vs.Len == 20 && len(vs.Values) == MaxReportedElems && vs.Values[1] == 2.5 && info.Name == ""
		}
	}
	if !found {
		t.Error("InspectFD found no anonymous float64 array of 20 elements holding 2.5")
	}
}

// Inspect reports what is wrong with a file that is not a good segment,
// with the sentinel that says it, and never opens through a link or
// waits on a FIFO.
func TestInspectBadFiles(t *testing.T) {
	good := helperproc.Name(t)
	s, err := Create(good, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	img, _ := os.ReadFile(Path(good))
	Remove(good)
	flip := func(off int) []byte {
		b := slices.Clone(img)
		b[off] ^= 0x40
		return b
	}
	for _, c := range []struct {
		what string
		make func(path string) error
		want error
	}{
		{"bad magic", func(p string) error { return os.WriteFile(p, flip(offMagic), 0o600) }, ErrBadMagic},
		{"bad version", func(p string) error { return os.WriteFile(p, flip(offVersion), 0o600) }, ErrVersion},
		{"unknown kind", func(p string) error { return os.WriteFile(p, flip(offKind), 0o600) }, ErrKind},
		{"bad checksum", func(p string) error { return os.WriteFile(p, flip(offStarted), 0o600) }, ErrChecksum},
		{"short", func(p string) error { return os.WriteFile(p, img[:10], 0o600) }, ErrSize},
		{"longer than its header says", func(p string) error { return os.WriteFile(p, append(slices.Clone(img), 0), 0o600) }, ErrSize},
		{"not ready", func(p string) error { return os.WriteFile(p, flip(offState), 0o600) }, ErrNotReady},
		{"symlink", func(p string) error { return os.Symlink(Path(good), p) }, ErrSymlink},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }, ErrNotRegular},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }, ErrNotRegular},
	} {
		t.Run(c.what, func(t *testing.T) {
			name := helperproc.Name(t)
			if err := c.make(Path(name)); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(Path(name))
			info, err := Inspect(name)
			if !errors.Is(err, c.want) {
				t.Fatalf("Inspect of a %s file: %v, want %v", c.what, err, c.want)
			}
			if info.Kind != KindAny || info.Report != nil {
				t.Errorf("Inspect of a %s file reported a kind or a state: %+v", c.what, info)
			}
		})
	}
	if _, err := Inspect("no/such"); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("Inspect of an invalid name: %v", err)
	}
	if _, err := Inspect(helperproc.Name(t)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Inspect of a missing name: %v", err)
	}
}

// Names lists every entry of ipckit's part of /dev/shm, segments or not.
func TestNamesListsShmEntries(t *testing.T) {
	a, b := helperproc.Name(t), helperproc.Name(t)
	s, err := Create(a, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(a)
	s.Close()
	if err := syscall.Mkfifo(Path(b), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(Path(b))
	names, err := Names()
	if err != nil || !slices.Contains(names, a) || !slices.Contains(names, b) || slices.Contains(names, ".ipckit-live-0") {
		t.Fatalf("Names: %v, %v; want %s and %s among them", names, err, a, b)
	}
}

// The catalog's inspector lists its entries as they are.
func TestInspectCatalog(t *testing.T) {
	c, err := NewCatalog(256)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hits, _ := c.Int64("hits")
	hits.Add(3)
	CatalogArray[float64](c, "xs", 2)
	rep, err := inspectCatalog(c.Segment().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	st := rep.(CatalogState)
	want := []CatalogEntry{
		{Name: "hits", State: "ready", Kind: KindInt64, Size: 8, Offset: uint64(c.data)},
		{Name: "xs", State: "ready", Kind: KindFloat64Array, Size: 16, Offset: uint64(c.data) + 8},
	}
	if !slices.Equal(st.Entries, want) || st.Slots != catEntries || st.Used != 24 || st.Room != 256 || st.Holders() != nil {
		t.Errorf("catalog: %+v, want entries %+v, 24 of 256 bytes used", st, want)
	}
}

// A payload that holds no catalog is ErrCorrupt, never a panic.
func FuzzInspectCatalog(f *testing.F) {
	c, err := NewCatalog(64)
	if err != nil {
		f.Fatal(err)
	}
	c.Int32("x")
	f.Add(slices.Clone(c.Segment().Bytes()))
	c.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		seg, err := NewHeap(len(b))
		if err != nil {
			t.Skip()
		}
		copy(seg.Bytes(), b)
		if _, err := inspectCatalog(seg.Bytes()); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("inspectCatalog: %v, want nil or ErrCorrupt", err)
		}
	})
}

// A creator is alive only if its pid runs with the start time the header
// records: a pid the kernel gave to another process since is dead.
func TestInspectCreatorPidReused(t *testing.T) {
	name := helperproc.Name(t)
	s, err := Create(name, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer s.Close()
	h := decodeHeader(s.mem)
	real := h.Started
	for _, c := range []struct {
		start uint64
		alive bool
	}{{h.Started, true}, {h.Started + 1, false}} {
		h.Started = c.start
		encodeHeader(s.mem, &h) // the pid of this process, with another start time
		info, err := Inspect(name)
		if err != nil {
			t.Fatal(err)
		}
		if info.CreatorPid != uint32(os.Getpid()) || info.CreatorAlive != c.alive {
			t.Errorf("creator pid %d started at %d (this process, started at %d): alive %v, want %v",
				info.CreatorPid, c.start, real, info.CreatorAlive, c.alive)
		}
	}
}

// Every kind of value and array has an inspector that reads what its
// methods stored; a Bool reads as a bool.
func TestInspectValueKinds(t *testing.T) {
	report := func(k Kind, seg *Segment) ValuesState {
		t.Helper()
		f, ok := inspectors.Load(k)
		if !ok {
			t.Fatalf("no inspector for %v", k)
		}
		rep, err := f.(Inspector)(seg.Bytes())
		if err != nil {
			t.Fatalf("inspect %v: %v", k, err)
		}
		return rep.(ValuesState)
	}
	b, _ := NewBool()
	defer b.Close()
	b.Store(true)
	if st := report(KindBool, b.Segment()); st.Len != 1 || st.Values[0] != true {
		t.Errorf("true Bool: %+v", st)
	}
	i8, _ := NewInt8()
	defer i8.Close()
	i8.Store(-5)
	if st := report(KindInt8, i8.Segment()); st.Len != 1 || st.Values[0] != int8(-5) {
		t.Errorf("Int8 holding -5: %+v", st)
	}
	f32, _ := NewFloat32()
	defer f32.Close()
	f32.Store(1.5)
	if st := report(KindFloat32, f32.Segment()); st.Len != 1 || st.Values[0] != float32(1.5) {
		t.Errorf("Float32 holding 1.5: %+v", st)
	}
	a, _ := NewArray[uint16](5)
	defer a.Close()
	a.Store(4, 9)
	if st := report(KindUint16Array, a.Segment()); st.Len != 5 || st.Values[4] != uint16(9) {
		t.Errorf("Uint16 array of 5 holding 9 last: %+v", st)
	}
	for k := range kindNames {
		_, ok := inspectors.Load(k)
		isValue := k >= KindInt32 && k <= KindFloat64Array || k >= KindInt8 && k <= KindUint32Array
		if isValue && !ok && k != KindBoolArray { // no Array[bool] exists
			t.Errorf("no inspector for %v", k)
		}
	}
	if _, err := InspectArray(KindInt8Array, make([]byte, 3), 4); !errors.Is(err, ErrSize) {
		t.Errorf("4 int8s in 3 bytes: %v, want ErrSize", err)
	}
	if _, err := InspectArray(KindBool, make([]byte, 8), 1); !errors.Is(err, ErrKind) {
		t.Errorf("InspectArray of a bool value: %v, want ErrKind", err)
	}
}
