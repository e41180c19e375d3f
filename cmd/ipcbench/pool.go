package main

import (
	"context"
	"runtime"
	"sync"

	"github.com/ipckit/ipckit/spawn"
)

// identity is the trivial task: the pool's own cost, nothing else.
var identity = spawn.RegisterTask("ipcbench.identity", func(_ context.Context, x int) (int, error) {
	return x, nil
})

// cpuJob is the tutorial's CPU-bound job: the sum over i < n of
// i + i² + i³ (modulo 2⁶⁴).
func cpuJob(n int) uint64 {
	var s uint64
	for i := range uint64(n) {
		s += i + i*i + i*i*i
	}
	return s
}

var cpuTask = spawn.RegisterTask("ipcbench.cpujob", func(_ context.Context, n int) (uint64, error) {
	return cpuJob(n), nil
})

// withPool runs f with a pool of NumCPU workers for task, all started;
// opts may be nil.
func withPool[In, Out any](task *spawn.Task[In, Out], opts *spawn.PoolOptions, warm In, f func(*spawn.Pool[In, Out]) (float64, error)) (float64, error) {
	ctx := context.Background()
	p, err := spawn.NewPool(ctx, task, opts)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	warmUp := make([]In, runtime.NumCPU())
	for i := range warmUp {
		warmUp[i] = warm
	}
	if _, err := p.Map(ctx, warmUp); err != nil {
		return 0, err
	}
	return f(p)
}

// goroutinePool is the peer of the process pool: NumCPU goroutines taking
// tasks from a channel, each task answering on a channel of its own.
type goroutinePool struct {
	tasks  chan func()
	wg     sync.WaitGroup
	chunks int // tasks mapInts has sent, for the tests
}

func newGoroutinePool() *goroutinePool {
	g := &goroutinePool{tasks: make(chan func())}
	for range runtime.NumCPU() {
		g.wg.Go(func() {
			for t := range g.tasks {
				t()
			}
		})
	}
	return g
}

func (g *goroutinePool) close() { close(g.tasks); g.wg.Wait() }

// apply runs f(x) on the pool, like Pool.Go followed by Get.
func (g *goroutinePool) apply(f func(int) int, x int) int {
	done := make(chan int, 1)
	g.tasks <- func() { done <- f(x) }
	return <-done
}

// mapInts is the peer's Map: a task for every chunk items of xs, as the
// pool sends them to its workers, the results in order. Not safe for
// concurrent use.
func (g *goroutinePool) mapInts(f func(int) int, xs []int, chunk int) []int {
	out := make([]int, len(xs))
	var wg sync.WaitGroup
	for lo := 0; lo < len(xs); lo += chunk {
		in, res := xs[lo:min(lo+chunk, len(xs))], out[lo:]
		wg.Add(1)
		g.chunks++
		g.tasks <- func() {
			for i, x := range in {
				res[i] = f(x)
			}
			wg.Done()
		}
	}
	wg.Wait()
	return out
}

func ident(x int) int { return x }

// mapItems is how many items the pool_map_us_per_item figure maps.
const mapItems = 100_000

// mapChunk is how many items of a Map the pool_map_us_per_item figure
// sends at once, on the pool and on its peer alike: the pool's automatic
// size, ceil(mapItems/(4*Workers)), which makes 8 chunks on 2 cores.
func mapChunk() int {
	d := 4 * runtime.NumCPU()
	return (mapItems + d - 1) / d
}

func poolMetrics() []metric {
	ctx := context.Background()
	items := rangeInts(mapItems)
	// The CPU-bound Map: 16 jobs a worker, each the tutorial's job over
	// i < 1,000,000 (about 0.6 ms here), so one Map is some 10 ms of work a
	// core. With 4 jobs a worker (2.5 ms), the pool's fixed cost per Map
	// (dispatch, result wake-ups, the parent's spinning on 2 cores) held the
	// speed-up to about 1.5x on 2 cores.
	cpuItems := func() []int {
		xs := make([]int, 16*runtime.NumCPU())
		for i := range xs {
			xs[i] = 1_000_000
		}
		return xs
	}
	perItem := func(ns float64, err error) (float64, error) { return ns / mapItems / 1e3, err }
	jobsPerSecond := func(ns float64, err error) (float64, error) {
		return float64(len(cpuItems())) / ns * 1e9, err
	}
	return []metric{
		{
			name: "pool_go_us_per_task", unit: "us",
			ours: side{"spawn.Pool", func(cfg *config) (float64, error) {
				return withPool(identity, nil, 0, func(p *spawn.Pool[int, int]) (float64, error) {
					ns, err := timeOps(cfg, func(n int) error {
						for i := range n {
							if _, err := p.Go(ctx, i).Get(ctx); err != nil {
								return err
							}
						}
						return nil
					})
					return ns / 1e3, err
				})
			}},
			peers: []side{{"goroutine_chan", func(cfg *config) (float64, error) {
				g := newGoroutinePool()
				defer g.close()
				ns, err := timeOps(cfg, func(n int) error {
					for i := range n {
						g.apply(ident, i)
					}
					return nil
				})
				return ns / 1e3, err
			}}},
		},
		{
			// A Map of mapItems trivial items, per item: the pool and the
			// goroutines both get the items in chunks of mapChunk, so the
			// figure compares the cost of moving a chunk, not of chunking.
			name: "pool_map_us_per_item", unit: "us",
			ours: side{"spawn.Pool", func(cfg *config) (float64, error) {
				opts := &spawn.PoolOptions{ChunkSize: mapChunk()}
				return withPool(identity, opts, 0, func(p *spawn.Pool[int, int]) (float64, error) {
					return perItem(timeOps(cfg, func(n int) error {
						for range n {
							if _, err := p.Map(ctx, items); err != nil {
								return err
							}
						}
						return nil
					}))
				})
			}},
			peers: []side{{"goroutine_chan", func(cfg *config) (float64, error) {
				g := newGoroutinePool()
				defer g.close()
				return perItem(timeOps(cfg, func(n int) error {
					for range n {
						g.mapInts(ident, items, mapChunk())
					}
					return nil
				}))
			}}},
		},
		{
			// Jobs per second on NumCPU worker processes and in one goroutine:
			// the ratio is the pool's speed-up.
			name: "pool_map_cpu_speedup", unit: "jobs/s", higher: true,
			ours: side{"spawn.Pool", func(cfg *config) (float64, error) {
				return withPool(cpuTask, nil, 1, func(p *spawn.Pool[int, uint64]) (float64, error) {
					return jobsPerSecond(timeOps(cfg, func(n int) error {
						for range n {
							if _, err := p.Map(ctx, cpuItems()); err != nil {
								return err
							}
						}
						return nil
					}))
				})
			}},
			peers: []side{{"serial", func(cfg *config) (float64, error) {
				var sink uint64
				defer runtime.KeepAlive(&sink) // the results stay live: the work cannot be dropped
				return jobsPerSecond(timeOps(cfg, func(n int) error {
					for range n {
						for _, x := range cpuItems() {
							sink += cpuJob(x)
						}
					}
					return nil
				}))
			}}},
		},
	}
}

func rangeInts(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}
