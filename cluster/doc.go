// Package cluster runs a spawn [spawn.Task] on worker processes spread over
// many machines, through NATS JetStream: the same pool as [spawn.Pool],
// when one machine is not enough.
//
// Go cannot ship closures, so a task travels by the name it was registered
// under with [spawn.RegisterTask], and every machine runs the same binary
// (or one that registers the same tasks). The caller makes a [Pool] with
// [NewPool] instead of [spawn.NewPool]; both are a [spawn.Executor], with
// the same Map, Imap, ImapUnordered, Apply and Go and the same result and
// error types. Each machine runs [Serve], which takes tasks from the
// stream and runs them in a local [spawn.Pool], so that one worker process
// uses all the cores of its host:
//
//	// on every worker machine
//	spawn.Main()
//	nc, _ := nats.Connect(url)
//	err := cluster.Serve(ctx, nc, nil, cluster.Handle(square))
//
//	// on the caller's
//	p, err := cluster.NewPool(ctx, nc, square, nil)
//	defer p.Close()
//	out, err := p.Map(ctx, xs) // in order, one result per item
//
// [Connect] with an empty URL starts an embedded nats-server with JetStream
// in a temporary directory ([StartServer]), so a program runs with nothing
// installed.
//
// # How it works
//
// Two work-queue streams (WorkQueuePolicy, file storage by default) carry
// the work: <Stream>_TASKS holds chunks of items on subjects
// <Stream>.task.<task>.<pool>.<call>, and <Stream>_RESULTS their results on
// <Stream>.res.<pool>. Every worker serving a task pulls from one durable
// consumer of that task (explicit ack, AckWait, MaxDeliver), so a chunk
// goes to one worker at a time. A worker acknowledges a chunk only after
// its results are stored; while it runs one it tells the server it is
// still working (InProgress), so AckWait bounds the time to notice a dead
// worker, not the length of a task. A chunk whose worker died (SIGKILL, a
// lost machine) is delivered again after AckWait, to any worker, up to
// MaxDeliver times; then the server's max-deliveries advisory fails its
// items with a [*spawn.WorkerError] that names them and wraps
// [ErrMaxDeliver]. Results are keyed by call and item index: an item run
// twice reports once (the stream drops a repeated result by its message
// ID, the pool any that slips through), so Map returns exactly one result
// per item, in order.
//
// A result waits for its pool at most 24 hours (the results stream's
// MaxAge): a pool that vanished without Close leaves nothing for ever.
//
// Cancelling a call (its ctx, or leaving an Imap loop) returns at once; the
// pool then tells the workers (a core NATS message on <Stream>.cancel.<pool>:
// a worker stops the call's running chunks and skips any it fetched) and
// purges the call's chunks still queued, so they never run. A server
// restarted on its file store keeps every accepted chunk and result; the
// connections reconnect, a publish that failed meanwhile is retried with
// the same message ID, and the call completes.
//
// Items are at least once, as in [spawn.Pool]: an item may run more than
// once (its worker died after running it, or a cancel raced with its
// start), never reported twice.
package cluster
