//go:build linux

package spawn_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ipckit/ipckit/spawn"
)

// cpuWork is the tutorial's job: sum of i + i^2 + i^3 for i < n.
func cpuWork(n int) int {
	s := 0
	for i := range n {
		s += i + i*i + i*i*i
	}
	return s
}

var cpuTask = spawn.RegisterTask("pool-cpu", func(ctx context.Context, n int) (int, error) { return cpuWork(n), nil })

// chanPool is the peer: NumCPU goroutines fed over channels.
type chanPool struct {
	tasks chan chanTask
	wg    sync.WaitGroup
}

type chanTask struct {
	x     int
	reply chan int
}

func newChanPool(n int, fn func(int) int) *chanPool {
	p := &chanPool{tasks: make(chan chanTask, 64)}
	for range n {
		p.wg.Go(func() {
			for t := range p.tasks {
				t.reply <- fn(t.x)
			}
		})
	}
	return p
}

func (p *chanPool) close() { close(p.tasks); p.wg.Wait() }

// mapChan is Map over the channel pool: ordered results.
func (p *chanPool) mapChan(xs []int) []int {
	out := make([]int, len(xs))
	type r struct{ i, y int }
	replies := make(chan r, 256)
	go func() {
		for i, x := range xs {
			rc := make(chan int, 1)
			p.tasks <- chanTask{x, rc}
			go func() { replies <- r{i, <-rc} }()
		}
	}()
	for range xs {
		v := <-replies
		out[v.i] = v.y
	}
	return out
}

func sqInt(x int) int { return x * x }

// BenchmarkPoolGo: Go+Get of a trivial task. "latency" is one task at a
// time (submit, wait, repeat); "pipelined" keeps 64 tasks in flight and
// reports the time per task.
func BenchmarkPoolGo(b *testing.B) {
	ctx := context.Background()
	p, err := spawn.NewPool(ctx, sq, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	cp := newChanPool(runtime.NumCPU(), sqInt)
	defer cp.close()

	b.Run("latency/pool", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if y, err := p.Go(ctx, i).Get(ctx); err != nil || y != i*i {
				b.Fatal(y, err)
			}
			i++
		}
	})
	b.Run("latency/goroutine_chan", func(b *testing.B) {
		b.ReportAllocs()
		rc := make(chan int, 1)
		i := 0
		for b.Loop() {
			cp.tasks <- chanTask{i, rc}
			if y := <-rc; y != i*i {
				b.Fatal(y)
			}
			i++
		}
	})
	const depth = 64
	b.Run("pipelined/pool", func(b *testing.B) {
		b.ReportAllocs()
		fs := make([]*spawn.Future[int], 0, depth)
		n := 0
		for b.Loop() {
			if len(fs) == depth {
				if _, err := fs[0].Get(ctx); err != nil {
					b.Fatal(err)
				}
				fs = fs[1:]
			}
			fs = append(fs, p.Go(ctx, n))
			n++
		}
		for _, f := range fs {
			f.Get(ctx)
		}
	})
	b.Run("pipelined/goroutine_chan", func(b *testing.B) {
		b.ReportAllocs()
		rcs := make([]chan int, 0, depth)
		n := 0
		for b.Loop() {
			if len(rcs) == depth {
				<-rcs[0]
				rcs = rcs[1:]
			}
			rc := make(chan int, 1)
			cp.tasks <- chanTask{n, rc}
			rcs = append(rcs, rc)
			n++
		}
		for _, rc := range rcs {
			<-rc
		}
	})
}

// BenchmarkPoolMap: Map over 100,000 trivial items with the default chunk
// size; reports ns/item.
func BenchmarkPoolMap(b *testing.B) {
	ctx := context.Background()
	xs := ints(100_000)
	b.Run("pool", func(b *testing.B) {
		p, err := spawn.NewPool(ctx, sq, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Map(ctx, xs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/item")
	})
	b.Run("goroutine_chan", func(b *testing.B) {
		cp := newChanPool(runtime.NumCPU(), sqInt)
		defer cp.close()
		b.ReportAllocs()
		for b.Loop() {
			cp.mapChan(xs)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/item")
	})
}

// BenchmarkPoolCPU: Map of CPU-bound items (the tutorial's sum over
// i < 1e6) on NumCPU workers, against the same work done serially in one
// goroutine, alternately in one loop; reports the speed-up.
func BenchmarkPoolCPU(b *testing.B) {
	ctx := context.Background()
	ncpu := runtime.NumCPU()
	p, err := spawn.NewPool(ctx, cpuTask, &spawn.PoolOptions{Workers: ncpu})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	xs := make([]int, 8*ncpu)
	for i := range xs {
		xs[i] = 1_000_000
	}
	// Warm up: NewPool returns once the workers are started, not once
	// they are ready (exec, runtime start, setup decoding take a few
	// milliseconds, as long as one Map here); and the serial side's code
	// and caches.
	if _, err := p.Map(ctx, xs); err != nil {
		b.Fatal(err)
	}
	cpuWork(xs[0])
	var tp, ts time.Duration
	for b.Loop() {
		t0 := time.Now()
		out, err := p.Map(ctx, xs)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		for i, x := range xs {
			if cpuWork(x) != out[i] {
				b.Fatal("wrong result")
			}
		}
		tp += t1.Sub(t0)
		ts += time.Since(t1)
	}
	b.ReportMetric(float64(ts)/float64(tp), "speedup")
	b.ReportMetric(float64(ncpu), "cpus")
}
