//go:build linux

package semaphore

import (
	"context"
	"errors"
	"sync"
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
	if _, err := b.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v", err)
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
