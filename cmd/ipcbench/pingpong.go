package main

import (
	"context"
	"runtime"
	"time"

	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// raw_pingpong is the floor of a spinning round trip between two
// processes: one shared word, which this process sets to an odd value and
// the child, spinning on it, moves to the next even one; this process
// spins until it sees that. Two cache-line transfers each way, no queue,
// no lock, no fence beyond the stores' own (x86 stores are ordered; the
// loads are sync/atomic's).

// bounceArg asks a child to bounce Word until it goes negative.
type bounceArg struct {
	Word *shm.Int64
}

var bounce = spawn.Register("ipcbench.bounce", func(ctx context.Context, a bounceArg) error {
	defer a.Word.Close()
	for {
		v := a.Word.Load()
		switch {
		case v < 0:
			return nil
		case v%2 == 1:
			a.Word.Store(v + 1)
		}
	}
})

// rawPingPongRTT measures round trips of one word between this process and
// a bounce child, and returns percentile p in microseconds.
func rawPingPongRTT(cfg *config, p float64) (float64, error) {
	w, err := shm.NewInt64()
	if err != nil {
		return 0, err
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	child, err := spawn.Start(ctx, bounce, bounceArg{Word: w}, nil)
	if err != nil {
		return 0, err
	}
	var h histogram
	n := rttSamples(cfg)
	v := int64(1)
	for i := -n / 10; i < n; i++ {
		start := time.Now()
		w.Store(v)
		for spins := 0; w.Load() != v+1; spins++ {
			if spins&(1<<20-1) == 1<<20-1 {
				runtime.Gosched() // the child has not started yet
			}
		}
		if i >= 0 {
			h.record(time.Since(start))
		}
		v += 2
	}
	w.Store(-1)
	keepHist(&h)
	return float64(h.percentile(p)) / 1e3, child.Wait()
}
