package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ipckit/ipckit/spawn"
)

// square is the pool's task: Python's job(x), returning x*x. A task has an
// input and a result, and runs in the pool's worker processes.
var square = spawn.RegisterTask("mpdemo.square", func(_ context.Context, x int) (int, error) {
	return x * x, nil
})

// poolDemo is the tutorial's Pool demo: pool.map, then apply_async of one
// value, then apply_async of ten, printed as Python prints them. With
// -cluster it runs the same calls on a cluster pool (see cluster.go).
func poolDemo(ctx context.Context) error {
	if *useCluster {
		return clusterPoolDemo(ctx)
	}
	pool, err := spawn.NewPool(ctx, square, &spawn.PoolOptions{Workers: 3}) // mp.Pool(processes=3)
	if err != nil {
		return err
	}
	defer pool.Close() // with mp.Pool(...) as pool: on an early return, pool.terminate()
	if err := poolCalls(ctx, pool); err != nil {
		return err
	}
	return pool.Shutdown(ctx) // pool.close(); pool.join()
}

// poolCalls makes the tutorial's calls on pool and prints their results.
func poolCalls(ctx context.Context, pool spawn.Executor[int, int]) error {
	res, err := pool.Map(ctx, rangeOf(10)) // pool.map(job, range(10))
	if err != nil {
		return err
	}
	fmt.Println(pyList(res))

	one, err := pool.Go(ctx, 3).Get(ctx) // pool.apply_async(job, (3,)).get()
	if err != nil {
		return err
	}
	fmt.Println(one)

	var futures []*spawn.Future[int] // [pool.apply_async(job, (i,)) for i in range(10)]
	for _, x := range rangeOf(10) {
		futures = append(futures, pool.Go(ctx, x))
	}
	var multi []int // [res.get() for res in multi_res]
	for _, f := range futures {
		v, err := f.Get(ctx)
		if err != nil {
			return err
		}
		multi = append(multi, v)
	}
	fmt.Println(pyList(multi))
	return nil
}

// rangeOf is Python's range(n).
func rangeOf(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

// pyList formats xs as Python prints a list: [0, 1, 4].
func pyList(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
