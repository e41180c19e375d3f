//go:build linux

package semaphore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
)

func TestBarrierOnHeap(t *testing.T) {
	const parties, rounds = 4, 50
	seg, _ := shm.NewHeap(BarrierSize(parties))
	b, err := InitBarrierAt(seg, 0, parties)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	phase := make([]int, parties)
	var wg sync.WaitGroup
	for p := range parties {
		wg.Go(func() {
			for r := range rounds {
				mu.Lock()
				phase[p] = r
				mu.Unlock()
				if _, err := b.Wait(t.Context()); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for q := range parties { // nobody is behind after the barrier
					if phase[q] < r {
						t.Errorf("round %d: party %d still in round %d", r, q, phase[q])
					}
				}
				mu.Unlock()
				if _, err := b.Wait(t.Context()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Broken() {
		t.Fatal("broken")
	}
}

func TestBarrierIndexes(t *testing.T) {
	b, err := NewBarrier(3)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	seen := make(chan int, 3)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			i, err := b.Wait(t.Context())
			if err != nil {
				t.Error(err)
			}
			seen <- i
		})
	}
	wg.Wait()
	close(seen)
	got := map[int]bool{}
	for i := range seen {
		got[i] = true
	}
	if len(got) != 3 || !got[0] || !got[1] || !got[2] {
		t.Fatalf("indexes %v, want 0, 1, 2", got)
	}
}

func TestBarrierCancelBreaks(t *testing.T) {
	b, err := NewBarrier(3)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	other := make(chan error)
	go func() { _, err := b.Wait(t.Context()); other <- err }()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := b.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrBroken) {
		t.Fatalf("Wait of the party whose ctx expired = %v, want both DeadlineExceeded and ErrBroken", err)
	}
	if err := <-other; !errors.Is(err, ErrBroken) {
		t.Fatalf("other party got %v, want ErrBroken", err)
	}
	if _, err := b.Wait(t.Context()); !errors.Is(err, ErrBroken) {
		t.Fatalf("Wait on a broken barrier = %v", err)
	}
}

// TestBarrierPartyDies kills a party that arrived while another sleeps in
// Wait: the sleeper gets ErrBroken, promptly.
func TestBarrierPartyDies(t *testing.T) {
	b, cmd := barrierWithParty(t, nil)
	other := make(chan error)
	go func() { _, err := b.Wait(t.Context()); other <- err }()
	asleepIn(t, 1, "(*Barrier).Wait")
	killed := time.Now()
	helperproc.Kill(cmd)
	if err := <-other; !errors.Is(err, ErrBroken) {
		t.Fatalf("survivor got %v, want ErrBroken", err)
	}
	if d := time.Since(killed); d > slowBound {
		t.Fatalf("barrier broke %v after the death", d)
	}
}

// TestBarrierAction: the action runs exactly once per generation, by the
// last party, before any party leaves; a failing action breaks the barrier,
// its runner gets both ErrBroken and the action's error. On the heap.
func TestBarrierAction(t *testing.T) {
	const parties, rounds = 4, 30
	seg, _ := shm.NewHeap(BarrierSize(parties))
	b, err := InitBarrierAt(seg, 0, parties)
	if err != nil {
		t.Fatal(err)
	}
	var runs, left atomic.Int32
	b.SetAction(func() error {
		if n := left.Load(); n != runs.Load()*parties {
			t.Errorf("action %d ran with %d parties gone, want %d", runs.Load(), n, runs.Load()*parties)
		}
		runs.Add(1)
		return nil
	})
	var wg sync.WaitGroup
	for range parties {
		wg.Go(func() {
			for r := range rounds {
				if _, err := b.Wait(t.Context()); err != nil {
					t.Error(err)
					return
				}
				if n := runs.Load(); n < int32(r+1) {
					t.Errorf("party left round %d after %d actions", r, n)
				}
				left.Add(1)
				// Nobody arrives at round r+1 before all left round r.
				for left.Load() < int32((r+1)*parties) {
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	if n := runs.Load(); n != rounds {
		t.Fatalf("action ran %d times in %d generations", n, rounds)
	}
	oops := errors.New("oops")
	b.SetAction(func() error { return oops })
	errs := make(chan error, parties)
	for range parties {
		wg.Go(func() { _, err := b.Wait(t.Context()); errs <- err })
	}
	wg.Wait()
	close(errs)
	var failed, broken int
	for err := range errs {
		switch {
		case errors.Is(err, oops) && errors.Is(err, ErrBroken):
			failed++
		case errors.Is(err, ErrBroken):
			broken++
		default:
			t.Errorf("Wait with a failing action = %v", err)
		}
	}
	if failed != 1 || broken != parties-1 {
		t.Fatalf("%d got the action's error, %d ErrBroken; want 1 and %d", failed, broken, parties-1)
	}
}

// TestBarrierReset: Reset breaks the parties waiting, makes a broken
// barrier usable again, and NWaiting counts the parties waiting.
func TestBarrierReset(t *testing.T) {
	seg, _ := shm.NewHeap(BarrierSize(3))
	b, err := InitBarrierAt(seg, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if b.Parties() != 3 || b.NWaiting() != 0 {
		t.Fatalf("Parties %d, NWaiting %d", b.Parties(), b.NWaiting())
	}
	errs := make(chan error, 2)
	for range 2 {
		go func() { _, err := b.Wait(t.Context()); errs <- err }()
	}
	asleepIn(t, 2, "(*Barrier).await")
	if n := b.NWaiting(); n != 2 {
		t.Fatalf("NWaiting %d, want 2", n)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := within(t, errs, "a party after Reset"); !errors.Is(err, ErrBroken) {
			t.Fatalf("party waiting through Reset got %v, want ErrBroken", err)
		}
	}
	if b.Broken() || b.NWaiting() != 0 {
		t.Fatalf("after Reset: broken %v, NWaiting %d", b.Broken(), b.NWaiting())
	}
	// Broken, then reset: three parties pass again.
	b.Abort()
	if !b.Broken() {
		t.Fatal("not broken after Abort")
	}
	b.Reset()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := b.Wait(t.Context()); err != nil {
				t.Errorf("Wait after Reset of a broken barrier: %v", err)
			}
		})
	}
	wg.Wait()
}

// TestBarrierActionRunnerDies: the last party dies in the action: the
// others get ErrBroken, promptly.
func TestBarrierActionRunnerDies(t *testing.T) {
	b, err := NewBarrier(2)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	other := make(chan error, 1)
	go func() { _, err := b.Wait(t.Context()); other <- err }()
	asleepIn(t, 1, "(*Barrier).await")
	cmd := startUntil(t, "barrieraction", holdArgs{B: b}, "in action")
	if n := b.NWaiting(); n != 1 {
		t.Fatalf("NWaiting %d while the action runs, want 1", n)
	}
	helperproc.Kill(cmd)
	if err := within(t, other, "a party after the action's runner died"); !errors.Is(err, ErrBroken) {
		t.Fatalf("party got %v, want ErrBroken", err)
	}
}

func init() {
	// barrieraction: arrive last with an action that says so and hangs.
	registerHold("barrieraction", func(a holdArgs) error {
		a.B.SetAction(func() error {
			fmt.Println("in action")
			time.Sleep(time.Minute)
			return nil
		})
		_, err := a.B.Wait(context.Background())
		return err
	})
}

// TestBarrierResetRacesArrivals resets a barrier of 3 while 3 parties
// arrive, at every point of their arrival, and again as long as some wait:
// each party returns nil or ErrBroken, never hangs, the generation passes
// whole or not at all (0 or 3 parties get nil), and afterwards the barrier
// is empty and usable.
func TestBarrierResetRacesArrivals(t *testing.T) {
	seg, _ := shm.NewHeap(BarrierSize(3))
	b, err := InitBarrierAt(seg, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 60 {
		errs := make(chan error, 3)
		for range 3 {
			go func() { _, err := b.Wait(t.Context()); errs <- err }()
		}
		for range round % 30 {
			runtime.Gosched()
		}
		if err := b.Reset(); err != nil {
			t.Fatal(err)
		}
		passed, returned := 0, 0
		for returned < 3 {
			select {
			case err := <-errs:
				returned++
				switch {
				case err == nil:
					passed++
				case !errors.Is(err, ErrBroken):
					t.Fatalf("round %d: Wait racing Reset = %v, want nil or ErrBroken", round, err)
				}
			default:
				if b.NWaiting() > 0 && b.NWaiting()+returned == 3 { // the rest wait for parties that have left
					b.Reset()
				}
				runtime.Gosched()
			}
		}
		if (passed != 0 && passed != 3) || b.NWaiting() != 0 || b.Broken() {
			t.Fatalf("round %d: %d passed (want 0 or 3), NWaiting %d, broken %v", round, passed, b.NWaiting(), b.Broken())
		}
	}
}
