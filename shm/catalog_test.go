//go:build linux

package shm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/liveness"
)

func init() {
	// token: print this process's liveness token and exit (a dead claimer).
	helperproc.Register("token", func([]string) error {
		t, err := liveness.Self()
		if err != nil {
			return err
		}
		fmt.Println(uint64(t))
		return nil
	})
	helperproc.Register("catalog", func(args []string) error {
		c, err := OpenCatalog(args[0])
		if err != nil {
			return err
		}
		defer c.Close()
		n, _ := strconv.Atoi(args[1])
		return addNames(c, n)
	})
}

// addNames adds 1 to each of ten shared counters, n times, finding them by
// name every time.
func addNames(c *Catalog, n int) error {
	for i := range n {
		v, err := c.Int64(fmt.Sprintf("counter-%d", i%10))
		if err != nil {
			return err
		}
		v.Add(1)
	}
	return nil
}

func checkNames(t *testing.T, c *Catalog, want int64) {
	t.Helper()
	for i := range 10 {
		v, err := c.Int64(fmt.Sprintf("counter-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if v.Load() != want {
			t.Errorf("counter-%d = %d, want %d", i, v.Load(), want)
		}
	}
}

func heapCatalog(t *testing.T, size int) *Catalog {
	t.Helper()
	seg, err := KindCatalog.NewHeap(catalogSize(size))
	if err != nil {
		t.Fatal(err)
	}
	c, err := initCatalog(seg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCatalogGoroutines(t *testing.T) {
	c := heapCatalog(t, 4096)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := addNames(c, 1000); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	checkNames(t, c, 800)
}

func TestCatalogProcesses(t *testing.T) {
	name := helperproc.Name(t)
	c, err := CreateCatalog(name, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer c.Close()
	var cmds []*exec.Cmd
	for range 3 {
		cmd := helperproc.Command(t, "catalog", name, "10000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	checkNames(t, c, 3000)
}

func TestCatalogKinds(t *testing.T) {
	c := heapCatalog(t, 256)
	a, err := CatalogArray[float64](c, "xs", 4)
	if err != nil {
		t.Fatal(err)
	}
	a.Store(3, 1.5)
	b, err := CatalogArray[float64](c, "xs", 4)
	if err != nil || b.Load(3) != 1.5 {
		t.Fatalf("second lookup: %v, %v", b, err)
	}
	for _, err := range []error{
		second(c.Int64("xs")),
		second(CatalogArray[float64](c, "xs", 5)),
		second(CatalogArray[int64](c, "xs", 4)),
	} {
		if !errors.Is(err, ErrKind) {
			t.Errorf("a lookup of another type = %v, want ErrKind", err)
		}
	}
	for _, err := range []error{
		second(c.Int64("")),
		second(c.Int64(strings.Repeat("x", maxNameLen+1))),
		second(CatalogArray[int64](c, "neg", -1)),
	} {
		if !errors.Is(err, os.ErrInvalid) {
			t.Errorf("a bad name or length: %v, want ErrInvalid", err)
		}
	}
	if _, err := CatalogArray[int64](c, "big", 1000); !errors.Is(err, ErrCatalogFull) {
		t.Errorf("too big: %v, want ErrCatalogFull", err)
	}
	for i := range catEntries {
		if _, err := c.Int32(fmt.Sprint(i)); err != nil && !errors.Is(err, ErrCatalogFull) {
			t.Fatal(err)
		}
	}
	if _, err := c.Int32("one too many"); !errors.Is(err, ErrCatalogFull) {
		t.Errorf("a full table: %v, want ErrCatalogFull", err)
	}
}

// deadToken returns the liveness token of a process that has exited.
func deadToken(t *testing.T) liveness.Token {
	t.Helper()
	out, err := helperproc.Command(t, "token").Output()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("helper said %q: %v", out, err)
	}
	tok := liveness.Token(n)
	if s := liveness.Check(tok); s != liveness.Dead {
		t.Fatalf("the exited helper's token is %v", s)
	}
	return tok
}

// claimed makes entry 0 of c claimed by owner, for name "x", in state st
// (entryFree with an owner is claiming).
func claimed(c *Catalog, owner uint64, st uint32) entry {
	e := c.entry(0)
	copy(e.b[entryOffName:], "x")
	e.b[entryOffKindLen], e.b[entryOffKindLen+2] = byte(KindInt64), 1
	e.owner.Store(owner)
	e.state.Store(st)
	return e
}

// A claimer that died inside a claim leaves no name blocked.
func TestCatalogDeadClaimer(t *testing.T) {
	dead := deadToken(t)
	for _, st := range []uint32{entryFree, entryNamed} {
		c := heapCatalog(t, 256)
		claimed(c, uint64(dead), st)
		v, err := c.Int64("x")
		if err != nil {
			t.Fatal(err)
		}
		v.Add(1)
		if s := c.entry(0).load(); s != entryAbandoned {
			t.Errorf("the dead claimer's entry is in state %d, want abandoned", s)
		}
		if s := c.entry(1).load(); s != entryReady {
			t.Errorf("the new entry is in state %d, want ready", s)
		}
	}
}

// A claimer that is alive, or whose liveness cannot be proven, is waited
// for, never abandoned; an owner word that is no token is ErrCorrupt.
func TestCatalogClaimerNotDead(t *testing.T) {
	me, err := liveness.Self()
	if err != nil {
		t.Fatal(err)
	}
	// uid 4000000007 has no registry: Unknown.
	unknown := uint64(4_000_000_007)<<30 | 1<<20 | 5
	if s := liveness.Check(liveness.Token(unknown)); s != liveness.Unknown {
		t.Fatalf("made-up claimer is %v", s)
	}
	for _, tc := range []struct {
		name  string
		owner uint64
	}{{"alive", uint64(me)}, {"unknown", unknown}} {
		for _, st := range []uint32{entryFree, entryNamed} {
			t.Run(fmt.Sprintf("%s/state-%d", tc.name, st), func(t *testing.T) {
				c := heapCatalog(t, 256)
				e := claimed(c, tc.owner, st)
				done := make(chan error, 1)
				go func() {
					_, err := c.Int64("x")
					done <- err
				}()
				select {
				case err := <-done:
					t.Fatalf("a lookup did not wait for the claimer: %v", err)
				case <-time.After(200 * time.Millisecond):
				}
				if s := e.state.Load(); s != st {
					t.Fatalf("the entry went from state %d to %d", st, s)
				}
				// The claimer finishes: the name is its.
				off, err := c.alloc(8, 8)
				if err != nil {
					t.Fatal(err)
				}
				ptrAt[atomic.Uint64](e.b, entryOffSize).Store(8)
				ptrAt[atomic.Uint64](e.b, entryOffOff).Store(uint64(off))
				e.set(entryReady)
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if s := c.entry(1).load(); s != entryFree {
					t.Errorf("entry 1 in state %d: the lookup did not take the claimer's answer", s)
				}
			})
		}
	}
	t.Run("corrupt-owner", func(t *testing.T) {
		for _, st := range []uint32{entryFree, entryNamed} {
			c := heapCatalog(t, 256)
			claimed(c, 1<<63|5, st)
			if _, err := c.Int64("x"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("state %d, owner no token: %v, want ErrCorrupt", st, err)
			}
		}
	})
}

// TestCatalogLayout pins the offsets the design comment gives.
func TestCatalogLayout(t *testing.T) {
	c := heapCatalog(t, 64)
	b := c.seg.Bytes()
	base := uintptr(unsafe.Pointer(&b[0]))
	e := c.entry(2)
	eb := uintptr(unsafe.Pointer(&e.b[0]))
	for _, f := range []struct {
		name      string
		got, want uintptr
		size      uintptr
	}{
		{"magic", uintptr(unsafe.Pointer(&b[catOffMagic])) - base, 0, 4},
		{"entries", uintptr(unsafe.Pointer(&b[catOffEntries])) - base, 4, 4},
		{"bump", uintptr(unsafe.Pointer(c.bump)) - base, 8, 8},
		{"entry 2", eb - base, 64 + 2*128, 8},
		{"state", uintptr(unsafe.Pointer(e.state)) - eb, 0, 4},
		{"owner", uintptr(unsafe.Pointer(e.owner)) - eb, 8, 8},
		{"off", entryOffOff, 16, 8},
		{"size", entryOffSize, 24, 8},
		{"kind and length", entryOffKindLen, 32, 4},
		{"name", entryOffName, 40, 1},
	} {
		if f.got != f.want {
			t.Errorf("%s at %d, want %d", f.name, f.got, f.want)
		}
		if (base+f.got)%f.size != 0 && f.name != "entry 2" {
			t.Errorf("%s: %d-byte field misaligned", f.name, f.size)
		}
	}
	if catMagic != 0x32544143 || catHeader != 64 || entrySize != 128 || maxNameLen != 88 ||
		entryFree != 0 || entryNamed != 2 || entryReady != 3 || entryAbandoned != 4 {
		t.Fatal("a shared constant changed")
	}
	if ptrAt[atomic.Uint32](b, catOffMagic).Load() != catMagic {
		t.Fatal("the magic is not where CatalogAt reads it")
	}
}

func TestCatalogCorrupt(t *testing.T) {
	c := heapCatalog(t, 64)
	b := c.seg.Bytes()
	b[catOffMagic] ^= 1
	if _, err := CatalogAt(c.seg); !errors.Is(err, ErrBadMagic) || !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad magic: %v, want ErrBadMagic and ErrCorrupt", err)
	}
	b[catOffMagic] ^= 1
	b[catOffEntries+2] = 0xff // a huge entry count
	if _, err := CatalogAt(c.seg); !errors.Is(err, ErrSize) || !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad entry count: %v, want ErrSize and ErrCorrupt", err)
	}
	b[catOffEntries+2] = 0
	// An entry whose offset points outside the segment.
	v, err := c.Int64("v")
	if err != nil || v == nil {
		t.Fatal(err)
	}
	*ptrAt[uint64](c.entry(0).b, entryOffOff) = 1 << 40
	if _, err := c.Int64("v"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad offset: %v, want ErrCorrupt", err)
	}
}
