package main

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// The cost of a cache line crossing between the two processes' cores moves
// with where the host places the vCPUs (on the machine of BENCHMARKS.md it
// flips, for minutes at a time, between about 160 and 570 ns a round trip),
// and every cross-process figure moves with it. So a run measures the bare
// crossing, a shared word bounced between two spinning processes with no
// ipckit code on the path, at its start and at its end, and prints both
// beside the figures: two runs are comparable only in the same mode.

// rawPong is the child of rawCrossing: it answers each odd value of the
// word with the next even one, and returns when the word goes negative.
var rawPong = spawn.Register("ipcbench.rawpong", func(_ context.Context, w *shm.Int64) error {
	defer w.Close()
	for spins := 0; ; spins++ {
		v := w.Load()
		switch {
		case v < 0:
			return nil
		case v&1 == 1:
			w.Store(v + 1)
		case spins%1024 == 0:
			runtime.Gosched()
		}
	}
})

// rawCrossing returns the median of five rounds of the bare round trip,
// in ns: this process stores an odd value into a shared word and spins
// until a child process has stored the next even one.
func rawCrossing(cfg *config) (float64, error) {
	w, err := shm.NewInt64()
	if err != nil {
		return 0, err
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	child, err := spawn.Start(ctx, rawPong, w, nil)
	if err != nil {
		return 0, err
	}
	n := rttSamples(cfg)
	var v int64
	var rounds []float64
	for r := -1; r < 5; r++ {
		start := time.Now()
		for range n {
			v++
			w.Store(v)
			for spins := 0; w.Load() != v+1; spins++ {
				if spins%1024 == 1023 {
					runtime.Gosched()
				}
			}
			v++
		}
		if r >= 0 {
			rounds = append(rounds, float64(time.Since(start).Nanoseconds())/float64(n))
		}
	}
	w.Store(-1)
	if err := child.Wait(); err != nil {
		return 0, err
	}
	return median(rounds), nil
}

// describeCrossing is the header line of rawCrossing's figure, said when.
func describeCrossing(cfg *config, when string) string {
	ns, err := rawCrossing(cfg)
	if err != nil {
		return fmt.Sprintf("# raw cross-process round trip (%s): %v\n", when, err)
	}
	return fmt.Sprintf("# raw cross-process round trip (%s): %.0f ns (a shared word, both sides spinning)\n", when, ns)
}
