// Package ipcqueue is a bounded multi-producer multi-consumer queue of
// variable-length byte messages in shared memory: ipckit's answer to
// Python's multiprocessing.Queue, and faster than a Go channel between two
// processes.
//
// A [Queue] lives in a segment: named ([Create], [Open]), anonymous ([New],
// passed to children started by spawn) or on the Go heap ([NewHeap], one
// process only, visible to the race detector). Its capacity is in bytes;
// every message costs its length rounded up to 8, plus an 8-byte header.
// A message larger than the maximum message size is refused with
// [ErrTooLarge].
//
//	q, _ := ipcqueue.New(1<<20, nil)
//	q.Put(ctx, []byte("hello"))
//	msg, _ := q.Get(ctx)
//
// Two different things end a queue's use, and they have different names:
//
//   - [Queue.Shutdown] closes the queue for everyone: producers in every
//     process then get [ErrShutdown]; consumers drain what is left and then
//     get [io.EOF]. Every blocked waiter, in every process, is woken.
//   - [Queue.Close] releases this handle's mapping only; the queue and
//     every other process's handle go on working.
//
// A [Typed] queue carries values of one Go type on top of a Queue (see its
// documentation for the codec).
//
// A Queue handle implements gob.GobEncoder and gob.GobDecoder: passed in a
// spawn argument, it arrives in the child attached to the same queue.
//
// # Crash safety
//
// A producer killed inside Put, at any instruction, loses only its own
// message: the queue is never wedged, consumers never see a torn message,
// and [Stats.Dropped] counts the loss once another process notices (within
// about 100 ms while anyone waits on or uses the queue). A consumer killed
// inside Get before taking its message leaves the message in the queue for
// the next consumer; killed after taking it (the single store that moves
// the head), the message is gone with it, as if it had died just after Get
// returned. Either way the other consumers wait at most about 100 ms.
package ipcqueue
