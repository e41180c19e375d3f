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
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
)

func init() {
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

// A claimer that died inside a claim leaves no name blocked.
func TestCatalogDeadClaimer(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := uint32(cmd.Process.Pid)
	for _, st := range []uint32{entryClaiming, entryNamed} {
		c := heapCatalog(t, 256)
		e := c.entry(0)
		copy(e.b[entryOffName:], "x")
		e.b[entryOffKindLen], e.b[entryOffKindLen+2] = byte(KindInt64), 1
		e.state.Store(st | dead<<3)
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
