//go:build linux

package spawn

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// itask is the internal tests' pool task.
var itask = RegisterTask("pool-internal", func(ctx context.Context, x int) (int, error) { return x + 1, nil })

// TestPoolWaitAfterWatchers: the goroutine that posts a worker's death on
// the result queue may still be inside Put (after the commit the reader
// acts on) when the reader has finished; Wait must not release the queue
// before that goroutine is done. A fault hook holds the goroutine right
// after its Put, as a preemption there would, then touches the queue.
func TestPoolWaitAfterWatchers(t *testing.T) {
	var held, after atomic.Bool
	var p *Pool[int, int]
	ready := make(chan struct{})
	poolFault = func(point string) {
		if point != "watch-posted" {
			return
		}
		<-ready
		held.Store(true)
		time.Sleep(200 * time.Millisecond)
		p.results.Len() // the mapping must still be there
		after.Store(true)
	}
	defer func() { poolFault = nil }()
	var err error
	p, err = NewPool(context.Background(), itask, &PoolOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	if y, err := p.Apply(context.Background(), 1); err != nil || y != 2 {
		t.Fatalf("Apply = %d, %v", y, err)
	}
	p.Close()
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if !held.Load() || !after.Load() {
		t.Fatalf("Wait returned while a watcher was still inside its post (held %v, done %v)", held.Load(), after.Load())
	}
}
