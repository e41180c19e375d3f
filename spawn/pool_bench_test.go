//go:build linux

package spawn_test

import (
	"context"
	"fmt"
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

// chanPool is the peer: goroutines fed over a channel, each calling fn
// on the values it receives.
type chanPool[T any] struct {
	tasks chan T
	wg    sync.WaitGroup
}

func newChanPool[T any](n int, fn func(T)) *chanPool[T] {
	p := &chanPool[T]{tasks: make(chan T, 64)}
	for range n {
		p.wg.Go(func() {
			for t := range p.tasks {
				fn(t)
			}
		})
	}
	return p
}

func (p *chanPool[T]) close() { close(p.tasks); p.wg.Wait() }

// chanTask is one item and where its result goes: the peer of Go.
type chanTask struct {
	x     int
	reply chan int
}

func sqTask(t chanTask) { t.reply <- sqInt(t.x) }

// chanChunk is a chunk of items, written in place into out: the peer of
// one chunk of Map.
type chanChunk struct {
	xs, out []int
	wg      *sync.WaitGroup
}

func sqChunk(c chanChunk) {
	for i, x := range c.xs {
		c.out[i] = sqInt(x)
	}
	c.wg.Done()
}

// mapChunked is Map over the channel pool, in chunks of size items:
// ordered results, returned once every chunk is done.
func mapChunked(p *chanPool[chanChunk], xs []int, size int) []int {
	out := make([]int, len(xs))
	var wg sync.WaitGroup
	for lo := 0; lo < len(xs); lo += size {
		hi := min(lo+size, len(xs))
		wg.Add(1)
		p.tasks <- chanChunk{xs[lo:hi], out[lo:hi], &wg}
	}
	wg.Wait()
	return out
}

func sqInt(x int) int { return x * x }

// newWarmPool starts a pool of sq on NumCPU workers with the given chunk
// size (0: automatic) and returns once every worker has run a task, so
// that no timed loop pays for a worker's start (NewPool returns once the
// workers are started, not once they are ready). It maps at least one
// chunk per worker, and the pool sends the first chunks of an idle pool
// to distinct workers (fewest chunks first).
func newWarmPool(b *testing.B, chunk int) *spawn.Pool[int, int] {
	b.Helper()
	workers := runtime.NumCPU()
	p, err := spawn.NewPool(context.Background(), sq, &spawn.PoolOptions{Workers: workers, ChunkSize: chunk})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	if _, err := p.Map(context.Background(), ints(workers*max(chunk, 4))); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkPoolGo: Go+Get of a trivial task on a warm pool, against the
// same round trip through a goroutine. "latency" is one task at a time
// (submit, wait, repeat); "pipelined" keeps 64 tasks in flight and also
// reports ns/task over the whole run, the tasks still in flight when the
// loop ends included.
func BenchmarkPoolGo(b *testing.B) {
	ctx := context.Background()
	p := newWarmPool(b, 0)
	cp := newChanPool(runtime.NumCPU(), sqTask)
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
		t0 := time.Now()
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
			if _, err := f.Get(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(time.Since(t0).Nanoseconds())/float64(n), "ns/task")
	})
	b.Run("pipelined/goroutine_chan", func(b *testing.B) {
		b.ReportAllocs()
		rcs := make([]chan int, 0, depth)
		n := 0
		t0 := time.Now()
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
		b.ReportMetric(float64(time.Since(t0).Nanoseconds())/float64(n), "ns/task")
	})
}

// BenchmarkPoolMap: Map over 100,000 trivial items on a warm pool, against
// the same Map over goroutines, both in chunks of the same size: Python's
// automatic size, ceil(len/(4*workers)), and 1 (each item on its own).
// Reports ns/item.
func BenchmarkPoolMap(b *testing.B) {
	ctx := context.Background()
	xs := ints(100_000)
	ncpu := runtime.NumCPU()
	for _, c := range []struct {
		name string
		size int
	}{
		{"chunk_auto", (len(xs) + 4*ncpu - 1) / (4 * ncpu)},
		{"chunk_1", 1},
	} {
		b.Run(c.name+"/pool", func(b *testing.B) {
			p := newWarmPool(b, c.size)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Map(ctx, xs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/item")
		})
		b.Run(c.name+"/goroutine_chan", func(b *testing.B) {
			cp := newChanPool(ncpu, sqChunk)
			defer cp.close()
			b.ReportAllocs()
			for b.Loop() {
				mapChunked(cp, xs, c.size)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/item")
		})
	}
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

// BenchmarkPoolImap: Imap of a trivial task over a lazy input, per item,
// with Python's default chunk size 1 (each result as soon as it is done)
// and with Chunked(256) (results in bursts, far less per item).
func BenchmarkPoolImap(b *testing.B) {
	ctx := context.Background()
	p := newWarmPool(b, 0)
	for _, chunk := range []int{1, 256} {
		b.Run(fmt.Sprintf("chunk=%d", chunk), func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for y, err := range p.Chunked(chunk).Imap(ctx, func(yield func(int) bool) {
				for i := 0; i < b.N && yield(i); i++ {
				}
			}) {
				if err != nil || y != n*n {
					b.Fatal(y, err)
				}
				n++
			}
		})
	}
}
