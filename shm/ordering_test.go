//go:build linux

package shm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/opentest"
)

func init() {
	// fill-forever: CreateInit whose fill says so and never returns, to be
	// killed mid-create.
	helperproc.Register("fill-forever", func(args []string) error {
		_, err := KindBytes.CreateInit(args[0], 64, nil, func(*Segment) error {
			fmt.Println("filling")
			select {}
		})
		return err
	})
}

// racingOpens is opentest.RacingOpens on a fresh name, 1,000 times. An
// object whose name is published before it is built shows up there as
// ErrCorrupt: 59 in 20,000 opens of catalogs before CreateCatalog built the
// catalog in its unnamed segment.
func racingOpens(t *testing.T, create, open opentest.Opener) {
	t.Helper()
	opentest.RacingOpens(t, 1000, helperproc.Name(t), create, open, Remove)
}

// An Open racing CreateCatalog finds a complete catalog or nothing.
func TestOpenCatalogRacingCreate(t *testing.T) {
	racingOpens(t,
		func(name string) (func() error, error) {
			c, err := CreateCatalog(name, 64, nil)
			if err != nil {
				return nil, err
			}
			return c.Close, nil
		},
		func(name string) (func() error, error) {
			c, err := OpenCatalog(name)
			if err != nil {
				return nil, err
			}
			return c.Close, nil
		})
}

// An Open racing CreateInit finds the segment as fill left it, or nothing.
func TestOpenRacingCreateInit(t *testing.T) {
	fill := func(s *Segment) error {
		b := s.Bytes()
		for i := range b {
			b[i] = 0xa5
		}
		return nil
	}
	racingOpens(t,
		func(name string) (func() error, error) {
			s, err := KindBytes.CreateInit(name, 256, nil, fill)
			if err != nil {
				return nil, err
			}
			return s.Close, nil
		},
		func(name string) (func() error, error) {
			s, err := KindBytes.Open(name)
			if err != nil {
				return nil, err
			}
			for i, b := range s.Bytes() {
				if b != 0xa5 {
					s.Close()
					return nil, fmt.Errorf("byte %d is %#x: opened before fill returned", i, b)
				}
			}
			return s.Close, nil
		})
}

// fill runs before the segment has its name and before its header says
// ready; a fill that fails leaves nothing behind.
func TestCreateInitUnpublished(t *testing.T) {
	name := helperproc.Name(t)
	var inside error
	fail := errors.New("fill failed")
	s, err := KindInt64.CreateInit(name, 8, nil, func(s *Segment) error {
		if _, err := Open(name); !errors.Is(err, os.ErrNotExist) {
			inside = fmt.Errorf("Open inside fill = %v, want os.ErrNotExist", err)
		} else if err := s.Check(); !errors.Is(err, ErrNotReady) {
			inside = fmt.Errorf("Check inside fill = %v, want ErrNotReady", err)
		}
		return fail
	})
	if inside != nil {
		t.Error(inside)
	}
	if !errors.Is(err, fail) || s != nil {
		t.Fatalf("CreateInit with a failing fill = %v, %v; want nil, its error", s, err)
	}
	if _, err := Open(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open after a failed fill = %v, want os.ErrNotExist", err)
	}
	s, err = KindInt64.CreateInit(name, 8, nil, func(*Segment) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatalf("Check after CreateInit = %v", err)
	}
	if _, err := KindInt64.Open(name); err != nil {
		t.Fatalf("Open after CreateInit = %v", err)
	}
}

// A creator killed inside fill leaves no name behind: openers find
// nothing (os.ErrNotExist), never a half-made object or one that waits
// for a dead creator, and the name is free for the next Create.
func TestCreatorKilledInFill(t *testing.T) {
	name := helperproc.Name(t)
	cmd := helperproc.Command(t, "fill-forever", name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "filling\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	if _, err := Open(name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open during fill = %v, want os.ErrNotExist", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := Open(name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open after the creator died = %v, want os.ErrNotExist", err)
	}
	s, err := Create(name, 8, nil)
	if err != nil {
		t.Fatalf("Create after the creator died = %v", err)
	}
	s.Close()
	Remove(name)
}

// validate loads the state word atomically: a (future) state change while
// the segment is shared does not race with Check. Under the race detector
// (a heap segment, where it sees every access) a plain read of the word
// in decodeHeader is reported here.
func TestStateLoadAtomic(t *testing.T) {
	s, err := KindBytes.NewHeap(8)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 1000 {
			stateWord(s.mem).Store(stateReady)
		}
	})
	for range 1000 {
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}
