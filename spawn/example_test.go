//go:build linux

package spawn_test

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

type squareArg struct {
	In  int64
	Out *shm.Int64 // shared: the child writes, the parent reads
}

// Registered at package level, so that the child knows the name too.
var square = spawn.Register("example-square", func(ctx context.Context, a squareArg) error {
	defer a.Out.Close()
	if a.In < 0 {
		return fmt.Errorf("negative input %d", a.In)
	}
	fmt.Println("child: squaring", a.In)
	a.Out.Store(a.In * a.In)
	return nil
})

func Example() {
	// In main: spawn.Main() first of all (here, TestMain does it).
	out, err := shm.NewInt64()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer out.Close()
	if err := spawn.Run(context.Background(), square, squareArg{In: 7, Out: out}, nil); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("parent:", out.Load())
	// Output:
	// child: squaring 7
	// parent: 49
}

func ExampleProcess_Wait() {
	out, err := shm.NewInt64()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer out.Close()
	p, err := spawn.Start(context.Background(), square, squareArg{In: -1, Out: out}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	err = p.Wait()
	var ce *spawn.ChildError
	if errors.As(err, &ce) {
		fmt.Println("child returned:", ce.Msg)
	}
	fmt.Println("exit code:", p.ExitCode())
	// Output:
	// child returned: negative input -1
	// exit code: 1
}

// Registered at package level, like every spawn function.
var cube = spawn.RegisterTask("example-cube", func(ctx context.Context, x int) (int, error) {
	if x < 0 {
		return 0, fmt.Errorf("negative input %d", x)
	}
	return x * x * x, nil
})

func ExamplePool() {
	ctx := context.Background()
	p, err := spawn.NewPool(ctx, cube, &spawn.PoolOptions{Workers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	out, err := p.Map(ctx, []int{1, 2, 3, -4, 5})
	fmt.Println(out)
	var te *spawn.TaskError
	if errors.As(err, &te) {
		fmt.Println("item", te.Task, "failed:", te.Msg)
	}

	y, err := p.Go(ctx, 10).Get(ctx)
	fmt.Println(y, err)

	// Python's pool.close() and pool.join(): no new work, the work
	// submitted finishes, the workers exit.
	f := p.Go(ctx, 3)
	fmt.Println(p.Shutdown(ctx))
	fmt.Println(f.Get(ctx))
	_, err = p.Map(ctx, []int{1})
	fmt.Println(errors.Is(err, spawn.ErrShutdown))
	// Output:
	// [1 8 27 0 125]
	// item 3 failed: negative input -4
	// 1000 <nil>
	// <nil>
	// 27 <nil>
	// true
}

func ExamplePool_Imap() {
	ctx := context.Background()
	p, err := spawn.NewPool(ctx, cube, &spawn.PoolOptions{Workers: 2, ChunkSize: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	// Each result comes as soon as it and those before it are done, in
	// the order of the input; a failed item yields its error in place.
	for y, err := range p.Imap(ctx, slices.Values([]int{1, 2, -3, 4})) {
		var te *spawn.TaskError
		if errors.As(err, &te) {
			fmt.Println("item", te.Task, "failed:", te.Msg)
			continue
		}
		fmt.Println(y)
	}
	// Output:
	// 1
	// 8
	// item 2 failed: negative input -3
	// 64
}

// ErrTooBig is registered, at package level, so that a task's error that
// wraps it matches it in the parent too.
var ErrTooBig = spawn.RegisterError(errors.New("example: input too big"))

var bounded = spawn.RegisterTask("example-bounded", func(ctx context.Context, x int) (int, error) {
	if x > 100 {
		return 0, fmt.Errorf("item %d: %w", x, ErrTooBig)
	}
	return x, nil
})

func ExampleRegisterError() {
	ctx := context.Background()
	p, err := spawn.NewPool(ctx, bounded, &spawn.PoolOptions{Workers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	_, err = p.Apply(ctx, 1000)
	fmt.Println(errors.Is(err, ErrTooBig))
	// Output:
	// true
}

func ExamplePool_Chunked() {
	ctx := context.Background()
	p, err := spawn.NewPool(ctx, cube, &spawn.PoolOptions{Workers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	// Python's pool.imap(f, xs, chunksize=3) over a lazy input: a
	// generator, here a range function.
	upTo := func(n int) func(yield func(int) bool) {
		return func(yield func(int) bool) {
			for i := 1; i <= n && yield(i); i++ {
			}
		}
	}
	for y, err := range p.Chunked(3).Imap(ctx, upTo(5)) {
		fmt.Println(y, err)
	}
	// Output:
	// 1 <nil>
	// 8 <nil>
	// 27 <nil>
	// 64 <nil>
	// 125 <nil>
}
