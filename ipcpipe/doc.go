// Package ipcpipe is Python's multiprocessing.Pipe for Go processes: two
// connected ends ([Conn]) over shared memory, each sending messages to the
// other.
//
//	a, b, _ := ipcpipe.Pipe(true)          // duplex: both ends send and receive
//	go b.Send(ctx, []byte("ping"))
//	msg, _ := a.Recv(ctx)
//
// A pipe lives in one segment: anonymous ([Pipe], [New]: an end reaches
// another process in the argument of a child started by spawn, and nothing
// is left in /dev/shm), named ([Create], [Open], [Remove]) or on the Go heap
// ([NewHeap], one process only, visible to the race detector). Each
// direction is a single-producer single-consumer ring of bytes: no lock on
// the fast path: a message sent costs one fencing store of the tail, a
// message received one release store of the head (the reader fences only
// every eighth of the ring, on an empty ring, or for a sleeping writer). A one-way pipe (duplex false) has one ring: as in Python, the
// first end only receives and the second only sends ([ErrOneWay]).
//
// Values of a Go type travel through [Typed], with ipcqueue.Typed's codec
// (a pointer-free T as its bytes, any other T as gob; a nil pointer
// arrives as nil).
//
// # Ends and processes
//
// Each end belongs to one process at a time: the one that made the pipe,
// until it hands the end to another (a child started by spawn, in its
// argument; or a process that opens a named pipe's end with [Open]). From
// then on the calls of the process that handed it on fail with [ErrMoved],
// and its [Conn.Close] releases only its handle, so the Python habit of
// closing the parent's copy of the child's end after starting the child is
// right here too. Within a process, a Conn is safe for concurrent use:
// sends are serialised with each other, and receives with each other.
//
// # Closing, and a peer's death
//
// [Conn.Close] by the end's process closes the end for good: the other end
// receives what was sent before, then [io.EOF]; its sends fail with
// [io.ErrClosedPipe] (Python's BrokenPipeError). A peer process that dies,
// even by SIGKILL, closes its end the same way, with errors that also
// match [ErrPeerDied]: its receiver drains the messages it sent and then
// gets io.EOF, and a sender waiting for room gets io.ErrClosedPipe, as soon
// as the kernel reports the death (see internal/liveness). A sender that
// does not need to wait is not told: its message stays in the pipe, as
// bytes written to a socket stay in its buffer.
//
// A child that dies before it attaches the end it was handed (during its
// start-up, before spawn decoded its argument) leaves the end in transit
// with the parent, which is alive: a receive on the other end then waits
// for its context, and a send for room, then for its context. Nothing in
// the pipe can tell that child from one still starting; the parent learns
// of it from spawn (Process.Wait), and then closes the other end.
//
// # Errors
//
// A bad constructor argument wraps [os.ErrInvalid]; a closed handle,
// [os.ErrClosed]; a cancelled wait returns ctx.Err(); a message over the
// maximum, [ErrTooLarge]; shared memory that does not hold a pipe,
// [ErrCorrupt].
package ipcpipe
