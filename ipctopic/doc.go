// Package ipctopic is publish/subscribe in shared memory: one or more
// publishers, and any number of subscribers (up to a capacity fixed at
// creation), each of which receives every message published after it
// joined, in order. It is iceoryx2's core pattern, and tokio's broadcast
// channel across processes, built to ipckit's fault rules.
//
// A [Topic] lives in a segment: named ([Create], [Open]), anonymous ([New],
// passed to children started by spawn) or on the Go heap ([NewHeap], one
// process only, visible to the race detector).
//
//	t, _ := ipctopic.New(&ipctopic.Options{Slots: 1024, MaxMsg: 64})
//	sub, _ := t.Subscribe(ctx)
//	t.Publish(ctx, []byte("hello"))
//	msg, _ := sub.Recv(ctx)
//
// # Capacity and policy
//
// A topic holds [Options.Slots] messages of at most [Options.MaxMsg]
// bytes each, and [Options.Subscribers] subscribers at once; none of them
// grows. When the slowest subscriber is a whole ring behind, the creator's
// [Policy] decides: under [Block] publishers wait for it; under [Overwrite]
// they overwrite the oldest message, and that subscriber's next
// [Subscriber.Recv] returns a [*LaggedError] with the exact number of
// messages it missed, then goes on from the oldest message still held.
//
// # Receiving
//
// [Subscriber.Recv] copies a message out; [Subscriber.Read] hands it to a
// function where it lies in shared memory (zero copy).
//
// # Shutdown and Close
//
// As for ipcqueue's Queue: [Topic.Shutdown] ends the topic for everyone
// (publishers then get [ErrShutdown]; subscribers receive what was
// published before and then [io.EOF]); [Topic.Close] releases this handle
// only (its subscribers leave), and [Subscriber.Close] one subscriber.
// Calls blocked on a closed handle return an error wrapping [os.ErrClosed].
//
// A Topic handle implements gob.GobEncoder and gob.GobDecoder: passed in a
// spawn argument, it arrives in the child attached to the same topic.
// Subscribers do not travel: a child subscribes through its own handle.
//
// # Crash safety
//
// Publishers take turns under ipckit's robust lock (internal/robust). A
// publisher killed at any instruction of Publish leaves its message either
// whole (delivered) or unseen by any subscriber (dropped and counted in
// [Stats.Dropped]); the next publisher, Subscribe or Shutdown repairs the
// lock and goes on. A subscriber that dies keeps its slot until someone
// waits on it: a publisher blocked behind it (which the kernel tells of the
// death at once) or a Subscribe finding every slot taken reclaims it
// ([Stats.Reclaimed]), so a dead subscriber holds publishers up for
// moments, not for good. Under [Overwrite] no publisher waits on a
// subscriber, so a dead one's slot is reclaimed only when a Subscribe
// finds every slot taken: until then it costs a slot and nothing else
// ([Stats.Subscribers] counts it, and cmd/ipcs shows its owner dead).
// Liveness is internal/liveness's: a live process is never taken for a
// dead one, whatever its PID namespace, and one whose liveness cannot be
// proven is waited for.
//
// # Errors
//
// [ErrShutdown] and [ErrCorrupt] are the values every ipckit package
// shares; [ErrTooLarge], [ErrFull] and [ErrLagged] are this package's. A
// bad option wraps [os.ErrInvalid]; a cancelled wait returns ctx.Err(). A
// corrupt or hostile segment is an error, never a panic or a hang on a
// dead process.
//
// The layout and the algorithm are described in layout.go.
package ipctopic
