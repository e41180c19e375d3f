package spawn

import (
	"context"
	"iter"
	"sync"
)

// Executor is what a pool of workers offers its callers, wherever the
// workers run: on this machine ([Pool]) or on others (the cluster
// package's Pool, over NATS JetStream). Code written against an Executor
// runs on either unchanged; only the constructor differs.
//
// The methods have the meanings, results and error types documented on
// [Pool]: results in input order for Map and Imap, each item's failure as
// a [*TaskError] or a [*WorkerError] (collected in a [*MapError] by Map),
// and a cancelled ctx ends the call with ctx.Err() without starting the
// items not yet started.
type Executor[In, Out any] interface {
	// Map runs the task on every item of xs and returns the results in
	// the order of xs: Python's Pool.map.
	Map(ctx context.Context, xs []In) ([]Out, error)
	// Imap yields the results in the order of xs, each as soon as it and
	// the ones before it are done: Python's Pool.imap.
	Imap(ctx context.Context, xs iter.Seq[In]) iter.Seq2[Out, error]
	// ImapUnordered yields each result as soon as it is done, with its
	// index in xs: Python's Pool.imap_unordered.
	ImapUnordered(ctx context.Context, xs iter.Seq[In]) iter.Seq2[int, Result[Out]]
	// Apply runs the task on x and waits for its result: Python's
	// Pool.apply.
	Apply(ctx context.Context, x In) (Out, error)
	// Go submits the task on x and returns at once: Python's
	// apply_async.
	Go(ctx context.Context, x In) *Future[Out]
}

// A local Pool is an Executor.
var _ Executor[int, int] = (*Pool[int, int])(nil)

// NewFuture returns a pending [Future] and the function that settles it,
// for an [Executor] implemented outside this package. The first call of
// settle sets the result that [Future.Get] returns and closes
// [Future.Done]; later calls do nothing. settle is safe for concurrent
// use.
func NewFuture[Out any]() (f *Future[Out], settle func(Out, error)) {
	fin := make(chan struct{})
	var (
		once sync.Once
		out  Out
		err  error
	)
	f = &Future[Out]{fin: fin, get: func() (Out, error) { return out, err }}
	return f, func(o Out, e error) {
		once.Do(func() {
			out, err = o, e
			close(fin)
		})
	}
}
