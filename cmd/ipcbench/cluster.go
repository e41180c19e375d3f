package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ipckit/ipckit/cluster"
	"github.com/ipckit/ipckit/spawn"
)

// clusterWorker is a cluster worker process: it serves the identity and
// CPU tasks at url with a local pool of one process, until it is killed.
var clusterWorker = spawn.Register("ipcbench.cluster-worker", func(ctx context.Context, url string) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	return cluster.Serve(ctx, nc, &cluster.ServeOptions{Workers: 1, Storage: cluster.FileStorage},
		cluster.Handle(identity), cluster.Handle(cpuTask))
})

// withCluster runs f with a pool of task on an embedded server (file store
// in a temporary directory, loopback) and workers worker processes, all
// started and warmed up.
func withCluster[In, Out any](task *spawn.Task[In, Out], workers int, opts *cluster.Options, warm In, f func(*cluster.Pool[In, Out]) (float64, error)) (float64, error) {
	ctx := context.Background()
	srv, err := cluster.StartServer(nil)
	if err != nil {
		return 0, err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	for range workers {
		w, err := spawn.Start(ctx, clusterWorker, srv.URL(), nil)
		if err != nil {
			return 0, err
		}
		defer func() { w.Kill(); w.Wait() }()
	}
	var p *cluster.Pool[In, Out]
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if p, err = cluster.NewPool(ctx, nc, task, opts); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("cluster workers not ready: %w", err)
		}
	}
	defer p.Close()
	warmUp := make([]In, 4*workers)
	for i := range warmUp {
		warmUp[i] = warm
	}
	if _, err := p.Map(ctx, warmUp); err != nil {
		return 0, err
	}
	return f(p)
}

// cpu10ms is the tutorial's job sized to about 10 ms of CPU here (0.6 ms
// per million).
const cpu10ms = 16_000_000

func clusterMetrics() []metric {
	ctx := context.Background()
	items := rangeInts(mapItems)
	perItem := func(ns float64, err error) (float64, error) { return ns / mapItems / 1e3, err }
	cpuJobs := make([]int, 16)
	for i := range cpuJobs {
		cpuJobs[i] = cpu10ms
	}
	cpuRate := func(workers int) func(cfg *config) (float64, error) {
		return func(cfg *config) (float64, error) {
			return withCluster(cpuTask, workers, &cluster.Options{ChunkSize: 1}, 1, func(p *cluster.Pool[int, uint64]) (float64, error) {
				ns, err := timeOps(cfg, func(n int) error {
					for range n {
						if _, err := p.Map(ctx, cpuJobs); err != nil {
							return err
						}
					}
					return nil
				})
				return float64(len(cpuJobs)) / ns * 1e9, err
			})
		}
	}
	return []metric{
		{
			// Go then Get, one task at a time: the round trip of one item
			// through the stream, a worker, its local pool and back.
			name: "cluster_go_us_per_task", unit: "us",
			ours: side{"cluster.Pool", func(cfg *config) (float64, error) {
				return withCluster(identity, 2, nil, 0, func(p *cluster.Pool[int, int]) (float64, error) {
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
			peers: []side{{"spawn.Pool", func(cfg *config) (float64, error) {
				return withPool(identity, &spawn.PoolOptions{Workers: 2}, 0, func(p *spawn.Pool[int, int]) (float64, error) {
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
			}}},
		},
		{
			// A Map of mapItems trivial items in chunks of mapChunk, per
			// item, on 2 worker processes and on a local pool of 2.
			name: "cluster_map_us_per_item", unit: "us",
			ours: side{"cluster.Pool", func(cfg *config) (float64, error) {
				return withCluster(identity, 2, &cluster.Options{ChunkSize: mapChunk()}, 0, func(p *cluster.Pool[int, int]) (float64, error) {
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
			peers: []side{{"spawn.Pool", func(cfg *config) (float64, error) {
				opts := &spawn.PoolOptions{Workers: 2, ChunkSize: mapChunk()}
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
			}}},
		},
		{
			// The scale note: 16 jobs of about 10 ms of CPU, one a
			// message, on 2 cluster workers, on 1, and on a local pool
			// of 2 (the same work without the network).
			name: "cluster_cpu10ms_jobs_per_s", unit: "jobs/s", higher: true,
			ours: side{"2_workers", cpuRate(2)},
			peers: []side{{"1_worker", cpuRate(1)}, {"spawn.Pool_2", func(cfg *config) (float64, error) {
				opts := &spawn.PoolOptions{Workers: 2, ChunkSize: 1}
				return withPool(cpuTask, opts, 1, func(p *spawn.Pool[int, uint64]) (float64, error) {
					ns, err := timeOps(cfg, func(n int) error {
						for range n {
							if _, err := p.Map(ctx, cpuJobs); err != nil {
								return err
							}
						}
						return nil
					})
					return float64(len(cpuJobs)) / ns * 1e9, err
				})
			}}},
		},
	}
}
