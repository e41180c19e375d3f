package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/ipckit/ipckit/cluster"
)

var (
	useCluster = flag.Bool("cluster", false, "pool: run the pool demo on a NATS JetStream cluster: the same calls, printing the same lines")
	natsURL    = flag.String("nats", "", "pool -cluster: the NATS server or cluster to join (default: an embedded server in a temporary directory)")
	serveURL   = flag.String("serve", "", "run only a cluster worker for the pool demo's task at this NATS URL, until interrupted (on another machine, say)")
)

// clusterPoolDemo is the pool demo on a cluster: a worker with a local pool
// of 3 processes serves the task in this program (more may join from other
// machines with -serve), and the calls go through the stream.
func clusterPoolDemo(ctx context.Context) error {
	nc, stop, err := cluster.Connect(*natsURL)
	if err != nil {
		return err
	}
	defer stop()
	sctx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- cluster.Serve(sctx, nc, &cluster.ServeOptions{Workers: 3}, cluster.Handle(square))
	}()
	defer func() {
		stopServe()
		<-served
	}()
	var pool *cluster.Pool[int, int]
	for deadline := time.Now().Add(10 * time.Second); ; {
		if pool, err = cluster.NewPool(ctx, nc, square, nil); !errors.Is(err, cluster.ErrNoWorker) || time.Now().After(deadline) {
			break
		}
		select { // the worker is making its consumer
		case err := <-served:
			return fmt.Errorf("cluster worker: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err != nil {
		return err
	}
	defer pool.Close()
	return poolCalls(ctx, pool)
}

// serveOnly runs a cluster worker for the demo's task until ctx ends.
func serveOnly(ctx context.Context) error {
	nc, stop, err := cluster.Connect(*serveURL)
	if err != nil {
		return err
	}
	defer stop()
	return cluster.Serve(ctx, nc, nil, cluster.Handle(square))
}
