// Package spawn runs a registered Go function in a child process, the way
// Python's multiprocessing runs a target with the "spawn" start method.
//
// A Go program cannot fork: the runtime's threads do not survive it. So spawn
// re-runs the program's own binary (/proc/self/exe) and, in the child,
// dispatches to a function registered under a name:
//
//	var greet = spawn.Register("greet", func(ctx context.Context, name string) error {
//		fmt.Println("hello,", name)
//		return nil
//	})
//
//	func main() {
//		spawn.Main() // first thing: in a child, runs the function and exits
//		if err := spawn.Run(context.Background(), greet, "bob", nil); err != nil {
//			log.Fatal(err)
//		}
//	}
//
// [Register] must run at package level (a var initialiser or init), so that
// the child, which runs the same package initialisers, knows the same names;
// [Main] must be the first call in main (and in TestMain, for tests that
// spawn), before anything expensive, because everything before it runs in
// every child too.
//
// # Arguments
//
// The argument is encoded with encoding/gob and sent to the child through a
// pipe (never the environment or the command line, so 10 MB is fine). gob is
// standard, typed (the child decodes into the registered function's own
// argument type, and spawn checks the type's name first), handles nested
// structs, slices, maps and pointers, and has the GobEncoder hooks through
// which ipckit's shared objects travel: shm segments and values, and the
// queues and locks built on them, arrive in the child attached to the same
// memory. Named objects travel as names; anonymous ones (memfds) as
// inherited descriptors, so nothing is left in /dev/shm even after kill -9.
// Only exported fields are sent, as always with gob; a type that cannot
// cross whole (a channel or func field, which gob would silently drop, or
// a struct with only unexported fields) fails Start with an error naming
// the field and its kind. Before encoding, Start
// walks the argument as gob does (exported fields, pointers, slices,
// arrays, map keys and values, interfaces) to find the anonymous objects,
// and passes each one's descriptor once, however often the object (or its
// segment) appears. An anonymous object the walk cannot see (in an
// unexported field that a type's own GobEncode writes) fails the Start,
// and so does encoding one anywhere but in a spawn argument.
//
// # Results
//
// [Process.Wait] returns nil when the function returned nil; a [*ChildError]
// holding the text of the error it returned (and matching, with errors.Is,
// every error registered with [RegisterError] that it matched); a
// [*PanicError] with the
// panic's value and stack; or an [*exec.ExitError] when the child died of a
// signal or called os.Exit with a non-zero code. When ctx was cancelled and
// the child killed for it, the error wraps both ctx.Err() and the
// *exec.ExitError. These reach the parent on a status pipe, not through the
// exit code alone. [Process.WaitContext] waits with a deadline (Python's
// join(timeout)). [Process.ExitCode] is Python's exitcode, except for a
// child killed by a signal: -N in Python, -1 here, the signal being in
// the *exec.ExitError.
//
// # Lifetime
//
// The child's stdout and stderr are the parent's unless [Options] say
// otherwise. Cancelling the ctx given to [Start] kills the child. A child
// dies with its parent, even when the parent is killed with SIGKILL: it is
// started with a parent-death signal (SIGKILL), and every child is forked
// from one goroutine locked to its own OS thread, which stays alive while any
// child it forked is running (golang/go#27505: the parent-death signal follows
// the thread that forked, not the process, and Go retires threads). So,
// unlike Python's non-daemon processes, children do not outlive a parent that
// returns from main without waiting for them. spawn reaps every child it
// starts, whether or not Wait is called.
//
// In the child, the function runs on the main goroutine with a context
// that SIGTERM ([Process.Terminate]) cancels, with cause [ErrTerminated];
// a function that then returns ctx.Err() ends the child by SIGTERM, as
// Python's terminate() does, and one that does not return within
// [Options.TermGrace] (one second by default) is ended by it anyway. The
// environment variable spawn uses to recognise a child is removed before
// the function runs, so it can spawn children of its own.
//
// # Names
//
// Every child has a name: [Options.Name], or "Process-N" as in Python
// ("Process-2:1" for the first child of "Process-2"; pool workers are
// "PoolWorker-N"). [Process.Name] tells it in the parent, [CurrentProcess]
// in the child ("MainProcess" elsewhere); [ActiveChildren] lists the
// children still running.
//
// # Pool
//
// A [Pool] runs a [Task] (a function registered with [RegisterTask]) in
// worker processes: Python's multiprocessing.Pool.
//
//	var square = spawn.RegisterTask("square", func(ctx context.Context, x int) (int, error) {
//		return x * x, nil
//	})
//
//	p, err := spawn.NewPool(ctx, square, nil) // runtime.NumCPU() workers
//	defer p.Close()                             // terminate(), and free the queues
//	out, err := p.Map(ctx, []int{1, 2, 3})      // [1 4 9], in order
//	y, err := p.Go(ctx, 4).Get(ctx)             // apply_async
//	err = p.Shutdown(ctx)                       // close(), then join()
//
// [Pool.Shutdown] is Python's close() and join(): no new work, the work
// submitted finishes, the workers exit. [Pool.Close] is terminate(), and
// what leaving a with block does: the workers are killed now, unfinished
// calls fail with an error matching os.ErrClosed, and the pool's queues are
// freed; call it in any case, as with any handle.
//
// Inputs travel to each worker on its own ipcqueue (anonymous segment),
// in chunks, as a gob stream; results come back on one shared queue. Unlike
// Python's pool, a worker that dies (SIGKILL, the OOM killer, os.Exit)
// fails only the item it was running, with a [*WorkerError] naming the
// item, the pid, the signal or exit code and the tail of its stderr; a
// fresh worker takes over and the call finishes the rest. An error or a
// panic in a task fails that item with a [*TaskError], and the worker goes
// on. [Pool.Map] returns every result and a [*MapError] naming each failed
// item; [Pool.MapAsync] is the same as a [Future]. Items that a dying
// worker had run but not yet reported are run again elsewhere, so a task
// may run more than once (never the one that killed its worker).
//
// [Pool.Imap] and [Pool.ImapUnordered] take an iter.Seq and read it
// lazily, a few chunks per worker ahead of the results yielded (for
// ImapUnordered, ahead of the oldest result not yet yielded, so a slow item
// holds the reading back and memory stays bounded), as Python reads a
// generator: a directory walk hashes as it goes. Unlike Python's
// imap, a failed item yields its error and the loop goes on; break to
// stop there. Chunk sizes default to Python's per call:
// ceil(len/(4*Workers)) for Map, 1 for the Imaps (each result comes as
// soon as it is done); [PoolOptions.ChunkSize] sets another for every
// call, [Pool.Chunked] for some: p.Chunked(100).Map(ctx, xs).
//
// A task's error crosses to the parent as text, and as the errors
// registered with [RegisterError] that it matched, so that errors.Is
// works in the parent for those: context.Canceled, os.ErrNotExist and the
// other standard sentinels, and your own. errors.As does not rebuild the
// task's error types.
//
// spawn works on Linux; elsewhere [Start] returns an error wrapping
// errors.ErrUnsupported.
package spawn
