package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/ipckit/ipckit/internal/futex"
	"github.com/ipckit/ipckit/ipcqueue"
)

// deadlineSamples is how many waits one round of deadline_late_p99_us
// makes: each sleeps to a deadline 1 to 4 ms away.
func deadlineSamples(cfg *config) int {
	if cfg.quick {
		return 100
	}
	return 300
}

// lateness times wait, given deadlines 1 to 4 ms away, and returns the
// 99th percentile of how late it returned after them, in microseconds.
func lateness(cfg *config, wait func(deadline time.Time) error) (float64, error) {
	var h histogram
	for range deadlineSamples(cfg) {
		deadline := time.Now().Add(time.Millisecond + rand.N(3*time.Millisecond))
		if err := wait(deadline); err != nil {
			return 0, err
		}
		h.record(time.Since(deadline))
	}
	return float64(h.percentile(0.99)) / 1e3, nil
}

// deadlineMetric: how late a Get on an empty queue returns after its
// context's deadline (issue 14: within 1 ms at p99), beside a bare futex
// sleep to such a deadline, which is what the kernel gives any sleeper.
func deadlineMetric() metric {
	return metric{
		name: "deadline_late_p99_us", unit: "us",
		ours: side{"ipcqueue.Get", func(cfg *config) (float64, error) {
			q, err := ipcqueue.New(4096, nil)
			if err != nil {
				return 0, err
			}
			defer q.Close()
			return lateness(cfg, func(deadline time.Time) error {
				ctx, cancel := context.WithDeadline(context.Background(), deadline)
				defer cancel()
				if _, err := q.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
					return err
				}
				return nil
			})
		}},
		peers: []side{{"futex_sleep", func(cfg *config) (float64, error) {
			var word uint32
			return lateness(cfg, func(deadline time.Time) error {
				if d := time.Until(deadline); d > 0 { // a negative timeout is futex.Forever
					futex.Wait(&word, 0, d)
				}
				return nil
			})
		}}},
	}
}
