package ipcqueue

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sync"
	"sync/atomic"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// Joinable queues (Python's JoinableQueue)
//
// A JoinableQueue is a Queue and a second, small segment of task counts
// (shm.KindTasks):
//
//	0    uint32 magic, uint32 version, uint32 slots, uint32 CRC-32C of 0..12
//	64   int64  unfinished: messages put and not yet marked done (or written off)
//	72   uint64 lost: messages written off, in total (a sequence Join watches)
//	80   uint32 lostPid: the pid of the last consumer written off
//	84   uint32 lostProcs: consumers written off, in total
//	128  uint32 doneFx: Join's sleepers word (robust.Wait)
//	256  slots, 32 bytes each: uint64 token, uint32 pid, uint32 0, int64 taken
//
// All of them are atomic words. Put adds 1 to unfinished before it puts
// (and takes it back if the Put fails). A consumer handle claims a slot
// the first time it gets a message (its token, by CAS from 0) and adds 1
// to its slot's taken after each Get; TaskDone takes 1 from unfinished,
// then from taken, and wakes Join's sleepers once unfinished reaches 0
// (after the add, a full fence: internal/robust's "Waiting").
//
// Deaths. A slot whose token names a dead process (liveness.Check) is
// written off by whoever finds it (Join's watch, and a handle claiming a
// slot): it takes the slot with a CAS to reapMark (one reaper wins), adds
// the dead consumer's taken to lost, takes it from unfinished, records the
// pid, wakes every joiner, and frees the slot. A Join that sees lost move
// past the value it started with returns a *LostError naming the count and
// the pid. Join follows the tokens of the slots with messages taken
// (robust.WaitOptions.Holders), so the kernel wakes it at such a death.
//
// Windows left. (1) A consumer killed after the queue's take (Get's head
// store, under the consumer lock: see layout.go) and before Get's add to
// its slot's taken (the unlock, the return from Queue.Get, the add: tens
// of instructions, longer if the goroutine is preempted there) loses the
// message uncounted: Join waits for it until its ctx is done. (2) A
// producer killed after Put's add to unfinished and before the queue's
// commit of the record leaves a message counted that never comes: the
// same. (3) A consumer killed between TaskDone's two adds has that
// message counted twice (done, and lost): Join returns a LostError one
// too high, and unfinished is one low (a later Join may return while one
// message is still not done).
//
// Counting before the take instead (taken += 1, then Get) would turn (1)
// into false losses of consumers killed while they wait in Get on an empty
// queue (the usual state of an idle consumer); counting after Put instead
// of before lets a fast TaskDone make unfinished reach 0 early. Closing
// (1) and (2) needs the count and the queue's own step in one critical
// section: Get storing "taking at head h" in its slot under the consumer
// lock before the head store (a reaper of a dead slot counts it taken iff
// head moved past h), and Put storing "putting" in a producer slot cleared
// at its commit under the producer lock (a reaper writes the count off if
// the dead producer committed nothing, as the queue's repair already
// decides for Dropped). Each costs a plain store or two per call to a
// line of the caller's own, no fence; both are hooks inside queue.go's
// Get and Put, which this file does not reach.
const (
	tMagic     = 0x4b534154 // "TASK"
	tVersion   = 1
	tOffCRC    = 12
	tOffUnfin  = 64
	tOffLost   = 72
	tOffLPid   = 80
	tOffLProcs = 84
	tOffDoneFx = 128
	tOffSlots  = 256
	slotSize   = 32
	// JoinableSlots is how many consumer handles a JoinableQueue tracks at
	// once (a slot is freed when its handle closes with nothing taken, or
	// its process dies).
	JoinableSlots = 64
	tasksSize     = tOffSlots + JoinableSlots*slotSize

	reapMark = 1 << 63 // a slot's token while a reaper writes it off
)

// ErrTasksLost is matched by the [LostError] of a Join.
var ErrTasksLost = errors.New("ipcqueue: messages lost with a consumer that died")

// ErrTaskDone means TaskDone was called more times than this handle got
// messages (Python's ValueError from task_done).
var ErrTaskDone = errors.New("ipcqueue: TaskDone without a message taken by this handle")

// LostError is Join's error when consumers died holding messages they had
// taken and not marked done: Lost messages, by Procs processes, the last
// of which had pid Pid. It matches [ErrTasksLost].
type LostError struct {
	Lost  int
	Procs int
	Pid   int
}

func (e *LostError) Error() string {
	others := ""
	if e.Procs > 1 {
		others = fmt.Sprintf(" and %d other consumers", e.Procs-1)
	}
	return fmt.Sprintf("ipcqueue: %d messages lost: consumer pid %d%s died after getting them and before TaskDone", e.Lost, e.Pid, others)
}

// Is reports whether target is ErrTasksLost.
func (e *LostError) Is(target error) bool { return target == ErrTasksLost }

// JoinableQueue is a [Queue] whose consumers mark each message done, so
// that producers can wait until all of them are: Python's
// multiprocessing.JoinableQueue, with task_done and join across
// processes. Unlike Python's, Join does not hang when a consumer dies
// between Get and TaskDone: it returns a [*LostError] saying how many
// messages were lost and with which pid.
//
// Get one from [NewJoinable], [NewJoinableHeap], [CreateJoinable],
// [OpenJoinable] or by gob-decoding a handle (it travels to spawn children
// in an argument, as a Queue does). The zero JoinableQueue is not usable.
// A JoinableQueue is safe for concurrent use; TaskDone marks a message
// taken through the same handle (each handle counts its own). It must not
// be copied.
type JoinableQueue struct {
	_ noCopy

	q   *Queue
	seg *shm.Segment // the task counts

	unfinished *atomic.Uint64 // an int64 in two's complement
	lost       *atomic.Uint64
	lostPid    *atomic.Uint32
	lostProcs  *atomic.Uint32
	doneFx     *atomic.Uint32

	self   liveness.Token
	closer robust.Closer

	mu   sync.Mutex
	slot int // this handle's slot, -1 until it gets a message
}

// NewJoinable makes a joinable queue in anonymous segments, as [New] does.
func NewJoinable(size int, opts *Options) (*JoinableQueue, error) {
	return joinable(New(size, opts))(shm.KindTasks.CreateAnonymous(tasksSize))
}

// NewJoinableHeap makes a joinable queue on the Go heap, as [NewHeap] does.
func NewJoinableHeap(size int, opts *Options) (*JoinableQueue, error) {
	return joinable(NewHeap(size, opts))(shm.KindTasks.NewHeap(tasksSize))
}

// CreateJoinable makes a named joinable queue: the queue called name and
// its task counts, called name+".tasks". Remove both with
// [RemoveJoinable].
func CreateJoinable(name string, size int, opts *Options) (*JoinableQueue, error) {
	var so *shm.Options
	if opts != nil {
		so = &shm.Options{Mode: opts.Mode}
	}
	tasks, err := shm.KindTasks.CreateInit(name+".tasks", tasksSize, so, func(s *shm.Segment) error {
		writeTasks(s.Bytes())
		return nil
	})
	if err != nil {
		return nil, err
	}
	q, err := Create(name, size, opts)
	if err != nil {
		tasks.Close()
		shm.Remove(name + ".tasks")
		return nil, err
	}
	return attachJoinable(q, tasks)
}

// OpenJoinable opens the named joinable queue made by [CreateJoinable].
func OpenJoinable(name string) (*JoinableQueue, error) {
	tasks, err := shm.KindTasks.Open(name + ".tasks")
	if err != nil {
		return nil, err
	}
	q, err := Open(name)
	if err != nil {
		tasks.Close()
		return nil, err
	}
	return attachJoinable(q, tasks)
}

// RemoveJoinable deletes the files of the named joinable queue.
func RemoveJoinable(name string) error {
	return errors.Join(Remove(name), shm.Remove(name+".tasks"))
}

// joinable makes a joinable queue from a new queue and a new, private
// tasks segment (the results of their constructors).
func joinable(q *Queue, qerr error) func(*shm.Segment, error) (*JoinableQueue, error) {
	return func(tasks *shm.Segment, err error) (*JoinableQueue, error) {
		if err = errors.Join(qerr, err); err != nil {
			if q != nil {
				q.Close()
			}
			if tasks != nil {
				tasks.Close()
			}
			return nil, err
		}
		writeTasks(tasks.Bytes())
		return attachJoinable(q, tasks)
	}
}

func writeTasks(b []byte) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], tMagic)
	le.PutUint32(b[4:], tVersion)
	le.PutUint32(b[8:], JoinableSlots)
	le.PutUint32(b[tOffCRC:], crc32.Checksum(b[:tOffCRC], castagnoli))
}

// checkTasks validates the fixed part of the task counts in b.
func checkTasks(b []byte) error {
	le := binary.LittleEndian
	switch {
	case len(b) < tasksSize:
		return fmt.Errorf("ipcqueue: %d-byte task counts: %w", len(b), ErrCorrupt)
	case le.Uint32(b[0:]) != tMagic || le.Uint32(b[4:]) != tVersion || le.Uint32(b[8:]) != JoinableSlots:
		return fmt.Errorf("ipcqueue: task counts: bad magic, version or slot count: %w", ErrCorrupt)
	case le.Uint32(b[tOffCRC:]) != crc32.Checksum(b[:tOffCRC], castagnoli):
		return fmt.Errorf("ipcqueue: task counts: checksum mismatch: %w", ErrCorrupt)
	}
	return nil
}

// attachJoinable validates the task counts and returns a handle that owns
// q and tasks (closing both if it fails).
func attachJoinable(q *Queue, tasks *shm.Segment) (*JoinableQueue, error) {
	j := &JoinableQueue{}
	if err := j.attach(q, tasks); err != nil {
		q.Close()
		tasks.Close()
		return nil, err
	}
	return j, nil
}

func (j *JoinableQueue) attach(q *Queue, tasks *shm.Segment) error {
	b := tasks.Bytes()
	if err := checkTasks(b); err != nil {
		return err
	}
	self, err := liveness.Self()
	if err != nil {
		return fmt.Errorf("ipcqueue: %w", err)
	}
	j.q, j.seg, j.self, j.slot = q, tasks, self, -1
	j.unfinished, j.lost = u64At(b, tOffUnfin), u64At(b, tOffLost)
	j.lostPid, j.lostProcs = u32At(b, tOffLPid), u32At(b, tOffLProcs)
	j.doneFx = u32At(b, tOffDoneFx)
	return nil
}

// slotWords returns slot i's token, pid and taken words.
func (j *JoinableQueue) slotWords(i int) (tok *atomic.Uint64, pid *atomic.Uint32, taken *atomic.Uint64) {
	return slotWordsIn(j.seg.Bytes(), i)
}

// slotWordsIn returns slot i's token, pid and taken words in the task
// counts b (checked by checkTasks).
func slotWordsIn(b []byte, i int) (tok *atomic.Uint64, pid *atomic.Uint32, taken *atomic.Uint64) {
	o := tOffSlots + i*slotSize
	return u64At(b, o), u32At(b, o+8), u64At(b, o+16)
}

// Queue returns the underlying queue (for its Stats, Len and the like).
// Messages put or taken through it directly are not counted as tasks.
func (j *JoinableQueue) Queue() *Queue { return j.q }

// Put appends msg as one more unfinished task; see [Queue.Put].
func (j *JoinableQueue) Put(ctx context.Context, msg []byte) error {
	j.unfinished.Add(1)
	if err := j.q.Put(ctx, msg); err != nil {
		j.finish(1)
		return err
	}
	return nil
}

// Get removes and returns the oldest message, which the caller must then
// mark done with [JoinableQueue.TaskDone] on this handle; see [Queue.Get].
func (j *JoinableQueue) Get(ctx context.Context) ([]byte, error) {
	taken, err := j.claim()
	if err != nil {
		return nil, err
	}
	msg, err := j.q.Get(ctx)
	if err == nil {
		taken.Add(1)
	}
	return msg, err
}

// TaskDone marks one message this handle got as done: Python's
// task_done(). When every message put is done, Join returns. It returns
// [ErrTaskDone] if this handle has no message left to mark.
func (j *JoinableQueue) TaskDone() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.q.open.Load() {
		return errClosed
	}
	if j.slot < 0 {
		return ErrTaskDone
	}
	_, _, taken := j.slotWords(j.slot)
	if int64(taken.Load()) <= 0 {
		return ErrTaskDone
	}
	j.finish(1)
	taken.Add(^uint64(0))
	return nil
}

// finish takes n from unfinished and wakes the joiners if it reached 0.
func (j *JoinableQueue) finish(n uint64) {
	if int64(j.unfinished.Add(-n)) <= 0 {
		robust.Wake(j.doneFx) // after the add: a full fence
	}
}

// claim returns this handle's taken word, claiming a slot on first use.
func (j *JoinableQueue) claim() (*atomic.Uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.q.open.Load() {
		return nil, errClosed
	}
	if j.slot >= 0 {
		_, _, taken := j.slotWords(j.slot)
		return taken, nil
	}
	for pass := range 2 {
		for i := range JoinableSlots {
			tok, pid, taken := j.slotWords(i)
			if tok.CompareAndSwap(0, uint64(j.self)) {
				pid.Store(uint32(os.Getpid()))
				j.slot = i
				return taken, nil
			}
		}
		if pass == 0 {
			j.reap() // free the slots of dead processes
		}
	}
	return nil, fmt.Errorf("ipcqueue: all %d consumer slots of the joinable queue are in use", JoinableSlots)
}

// reap writes off the slots of dead processes (see "Deaths"), and reports
// whether it wrote off any message.
func (j *JoinableQueue) reap() bool {
	wrote := false
	for i := range JoinableSlots {
		tok, pid, taken := j.slotWords(i)
		t := tok.Load()
		if t == 0 || t&reapMark != 0 || liveness.Token(t) == j.self || liveness.Check(liveness.Token(t)) != liveness.Dead {
			continue
		}
		if !tok.CompareAndSwap(t, reapMark) {
			continue
		}
		if n := taken.Load(); int64(n) > 0 {
			j.lostPid.Store(pid.Load())
			j.lostProcs.Add(1)
			j.lost.Add(n)
			j.finish(n)
			robust.WakeAll(j.doneFx)
			wrote = true
		}
		taken.Store(0)
		tok.Store(0)
	}
	return wrote
}

// holders returns the tokens of the other processes holding messages.
func (j *JoinableQueue) holders() []liveness.Token {
	var ts []liveness.Token
	for i := range JoinableSlots {
		tok, _, taken := j.slotWords(i)
		if t := tok.Load(); t != 0 && t&reapMark == 0 && liveness.Token(t) != j.self && int64(taken.Load()) > 0 {
			ts = append(ts, liveness.Token(t))
		}
	}
	return ts
}

// Join waits until every message put has been marked done: Python's
// join(). If consumers died holding messages they had not marked done
// (before Join or while it waits), it returns a [*LostError] saying how
// many messages were lost, by whom, at once: those messages are written
// off, so a later Join waits only for the others. It returns ctx.Err() if
// ctx is done first, and an error wrapping [os.ErrClosed] on a closed
// handle.
func (j *JoinableQueue) Join(ctx context.Context) error {
	if !j.q.open.Load() {
		return errClosed
	}
	lost0, procs0 := j.lost.Load(), j.lostProcs.Load()
	ready := func() bool { return int64(j.unfinished.Load()) <= 0 || j.lost.Load() != lost0 || !j.q.open.Load() }
	o := robust.WaitOptions{Closer: &j.closer, Watch: j.reap, Holders: j.holders}
	for {
		j.reap()
		if n := j.lost.Load() - lost0; n != 0 {
			return &LostError{Lost: int(n), Procs: int(j.lostProcs.Load() - procs0), Pid: int(j.lostPid.Load())}
		}
		if int64(j.unfinished.Load()) <= 0 {
			return nil
		}
		if !j.q.open.Load() {
			return errClosed
		}
		if err := robust.Wait(ctx, j.doneFx, ready, &o); err != nil {
			return waitErr(err)
		}
	}
}

// Unfinished returns how many messages were put and not yet marked done
// (nor written off): a snapshot.
func (j *JoinableQueue) Unfinished() int { return int(int64(j.unfinished.Load())) }

// Shutdown ends the queue for everyone; see [Queue.Shutdown]. It does not
// mark anything done.
func (j *JoinableQueue) Shutdown() error { return j.q.Shutdown() }

// Close releases this handle (its queue handle and task counts); see
// [Queue.Close]. Messages it got and did not mark done stay unfinished
// while this process lives. Blocked Joins on the handle return an error
// wrapping os.ErrClosed.
func (j *JoinableQueue) Close() error {
	j.mu.Lock()
	if j.slot >= 0 && j.q.open.Load() {
		tok, _, taken := j.slotWords(j.slot)
		if taken.Load() == 0 {
			tok.Store(0)
		}
		j.slot = -1
	}
	j.mu.Unlock()
	err := j.q.Close()
	j.closer.Close(j.doneFx)
	return errors.Join(err, j.seg.Close())
}

// wireJoinable is a joinable queue's handle.
type wireJoinable struct {
	Q     *Queue
	Tasks *shm.Segment
}

// GobEncode encodes a handle to the joinable queue; see [Queue.GobEncode].
func (j *JoinableQueue) GobEncode() ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(wireJoinable{Q: j.q, Tasks: j.seg}); err != nil {
		return nil, fmt.Errorf("ipcqueue: encode handle: %w", err)
	}
	return buf.Bytes(), nil
}

// GobDecode attaches j, which must be new, to the joinable queue a handle
// names.
func (j *JoinableQueue) GobDecode(b []byte) error {
	var w wireJoinable
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&w); err != nil {
		return fmt.Errorf("ipcqueue: decode handle: %w", err)
	}
	if w.Q == nil || w.Tasks == nil {
		return fmt.Errorf("ipcqueue: decode handle: no queue or task counts: %w", ErrCorrupt)
	}
	if k := w.Tasks.Kind(); k != shm.KindTasks {
		w.Q.Close()
		w.Tasks.Close()
		return fmt.Errorf("ipcqueue: decode handle: segment holds %v, not task counts: %w", k, shm.ErrKind)
	}
	if err := j.attach(w.Q, w.Tasks); err != nil {
		w.Q.Close()
		w.Tasks.Close()
		return fmt.Errorf("ipcqueue: decode handle: %w", err)
	}
	return nil
}

// The JoinableQueue's resolver for internal/handoff (its files: the
// queue's segment and the task counts). It must come before handoff.go's
// resolver of the Typed queues, which claims every struct of this package
// with a Queue() *Queue method, JoinableQueue included, and would pass
// only the queue's file (the first resolver to claim a type decides).
// Package variables are initialised before any init function runs, so this
// one is registered first.
var _ = registerJoinableHandoff()

func registerJoinableHandoff() bool {
	handoff.Register(handoff.For(func(j *JoinableQueue) []*os.File { return handoff.Files(j.q, j.seg) }))
	return true
}
