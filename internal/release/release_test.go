package release

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestPublish: a value written before a release store is seen by whoever
// loads the stored word (atomically) and finds the new value. Under -race
// this also checks that the race build's store is one the detector sees.
func TestPublish(t *testing.T) {
	const rounds = 10000
	var flag atomic.Uint64
	data := make([]uint64, rounds+1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); i <= rounds; i++ {
			for flag.Load() != i-1 {
			}
			data[i] = i * 3
			Store64(&flag, i)
		}
	}()
	for i := uint64(1); i <= rounds; i++ {
		for flag.Load() < i {
		}
		if data[i] != i*3 {
			t.Fatalf("round %d: data %d", i, data[i])
		}
	}
	wg.Wait()
	if flag.Load() != rounds {
		t.Fatalf("flag %d", flag.Load())
	}
}
