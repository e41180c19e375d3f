package main

import (
	"context"
	"fmt"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/spawn"
)

// jobArg is what each job process receives: the range of its sum and the
// queue to put the result on (Python's args=(q,)).
type jobArg struct {
	N       int
	Results *ipcqueue.Typed[sum128]
}

// queueJob runs in a child process: it computes the tutorial's sum and puts
// it on the shared queue.
var queueJob = spawn.Register("mpdemo.queueJob", func(ctx context.Context, a jobArg) error {
	defer a.Results.Close()
	return a.Results.Put(ctx, job(a.N))
})

// newResults makes the shared queue the job processes answer on.
func newResults() (*ipcqueue.Typed[sum128], error) {
	q, err := ipcqueue.New(4096, nil)
	if err != nil {
		return nil, err
	}
	t, err := ipcqueue.NewTyped[sum128](q)
	if err != nil {
		q.Close()
	}
	return t, err
}

// twoProcesses runs the job over n in two child processes and returns
// their results, in the order they arrived.
func twoProcesses(ctx context.Context, n int) (sum128, sum128, error) {
	results, err := newResults()
	if err != nil {
		return sum128{}, sum128{}, err
	}
	defer results.Close()
	var procs []*spawn.Process
	for range 2 {
		p, err := spawn.Start(ctx, queueJob, jobArg{N: n, Results: results}, nil) // p.start()
		if err != nil {
			for _, p := range procs {
				p.Kill()
				p.Wait()
			}
			return sum128{}, sum128{}, err
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		if err := p.Wait(); err != nil { // p.join(): safe here, unlike Python's
			return sum128{}, sum128{}, err // Queue, whose feeder thread can hang it
		}
	}
	r1, err := results.Get(ctx)
	if err != nil {
		return sum128{}, sum128{}, err
	}
	r2, err := results.Get(ctx)
	return r1, r2, err
}

// queueDemo is the tutorial's Queue demo: two processes compute the sum
// over i < 1000 of i + i² + i³ and put it on the queue; the parent prints
// both and their sum.
func queueDemo(ctx context.Context) error {
	r1, r2, err := twoProcesses(ctx, 1000)
	if err != nil {
		return err
	}
	fmt.Println(r1)
	fmt.Println(r2)
	fmt.Println(r1.plus(r2))
	return nil
}
