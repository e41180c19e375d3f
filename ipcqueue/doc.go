// Package ipcqueue is a bounded multi-producer multi-consumer queue of
// variable-length byte messages in shared memory: ipckit's answer to
// Python's multiprocessing.Queue, for processes of one program or of
// several.
//
// A [Queue] lives in a segment: named ([Create], [Open]), anonymous ([New],
// passed to children started by spawn) or on the Go heap ([NewHeap], one
// process only, visible to the race detector).
//
//	q, _ := ipcqueue.New(1<<20, nil)
//	q.Put(ctx, []byte("hello"))
//	msg, _ := q.Get(ctx)
//
// # Capacity
//
// A queue's capacity is in bytes, and exact. Each message costs its length
// rounded up to 8, plus an 8-byte header; a message that would cross the
// end of the ring is preceded by padding up to that end, which costs the
// rest of the ring. The queue holds messages while these costs add up to
// at most [Queue.Capacity], which is the ring's size (the constructor's
// size rounded up to a power of two) less 8 bytes. So a queue of 256 bytes
// holds 248 bytes of messages: three messages of 56 bytes (64 each), and
// never four. Messages of one cost that is a power of two (8, 16, 32, ...)
// always fit Capacity/cost at a time. A message larger than the maximum
// message size ([Queue.MaxMsg]) is refused with [ErrTooLarge].
//
// # Batches and zero-copy
//
// [Queue.PutBatch] writes many messages as one: one lock, one commit store,
// one full fence and at most one wake-up for the whole batch, which
// consumers see whole or not at all (even if its producer is killed
// halfway). It waits for room for the whole batch and never splits it; a
// batch the empty queue could not hold is [ErrTooLarge]. [Queue.Reserve]
// returns a [Claim] on room in the ring: write the message into
// [Claim.Bytes], then [Claim.Commit] or [Claim.Abort]. A claim holds the
// producer side, like a lock, until it is ended (see [Claim]).
// [Queue.Read] passes up to max messages to a function in place, in the
// ring, and takes them with one store of the head; [Queue.GetBatch] copies
// them into buffers. None of these allocates; [Typed] has batch forms too.
// Whether they beat a Go channel on a given machine is for ipcbench to say
// (BENCHMARKS.md); this documentation makes no claim of speed.
//
// # Try calls
//
// [Queue.TryGet], [Queue.TryRead] and their kin report "empty", and
// [Queue.TryPut] and [Queue.TryPutBatch] "full", only if the queue was
// empty (had no room for the message or batch) at some instant during the
// call: while another Get or Put merely holds the lock, they wait for it.
// The exceptions, each stated at the call: another consumer inside Read's
// function (TryGet may report empty), a claim held (TryPut may report
// full), and a lock holder that makes no progress for 100 ms (a stopped
// process).
//
// # Shutdown and Close
//
// Two different things end a queue's use, and they have different names:
//
//   - [Queue.Shutdown] ends the queue for everyone (Python 3.13's
//     Queue.shutdown): producers in every process then get [ErrShutdown];
//     consumers drain what is left and then get [io.EOF]. Every blocked
//     waiter, in every process, is woken.
//   - [Queue.Close] releases this handle (its mapping) only; the queue and
//     every other handle go on working. Calls blocked on the handle return
//     an error wrapping [os.ErrClosed], as does every later call.
//
// A [Typed] queue carries values of one Go type on top of a Queue (see its
// documentation for the codec).
//
// A Queue handle implements gob.GobEncoder and gob.GobDecoder: passed in a
// spawn argument, it arrives in the child attached to the same queue.
//
// # Errors
//
// [ErrShutdown] and [ErrCorrupt] are the values every ipckit package
// shares; [ErrTooLarge] is this package's. A bad constructor argument
// wraps [os.ErrInvalid], a closed handle [os.ErrClosed], and a cancelled
// wait returns ctx.Err().
//
// # Crash safety
//
// A producer killed inside Put, at any instruction, loses only its own
// message: the queue is never wedged, consumers never see a torn message,
// and [Stats.Dropped] counts the loss once another process notices: the
// next Put, TryPut, Stats or Shutdown, a producer waiting for the dead
// one, or a consumer that went to sleep on the empty queue while the dead
// one was inside its Put (the kernel tells it of the death at once). A
// producer killed after committing its message but before waking a
// consumer that was already asleep when its Put began leaves the message
// to be taken when the next Put wakes that consumer.
//
// A producer killed inside PutBatch loses the whole batch or none of it:
// consumers see all of its messages or none, and a lost batch counts all
// its messages in [Stats.Dropped]. A process killed holding a [Claim] is
// one killed inside Put: its message is never seen and counts as dropped.
// A consumer killed inside [Queue.Read]'s function leaves every message
// of that Read in the queue for the next consumer (at-least-once delivery
// for that call).
//
// A consumer killed inside Get before taking its message leaves the
// message in the queue for the next consumer; killed after taking it (the
// single store that moves the head), the message is gone with it, as if
// it had died just after Get returned. Either way the other consumers
// take its place as soon as the kernel reports its death.
//
// Deaths are told by a lock the kernel drops when a process exits (see
// internal/liveness), the same in every PID namespace: a live process is
// never taken for a dead one, even in another container sharing /dev/shm.
package ipcqueue
