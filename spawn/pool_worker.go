package spawn

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime/debug"
	"time"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/shm"
)

// Pool wire protocol
//
// Every worker has its own task queue (parent -> worker, one producer, one
// consumer) and all workers share one result queue (workers -> parent).
// Both directions are gob streams kept across messages, so that a type's
// description is sent once per stream, not once per message:
//
//	task message:   flag byte, gob(taskMsg[In])
//	result message: worker serial (8 bytes, little endian), flag byte,
//	                gob(resultMsg[Out])
//
// flag is msgCont (the message continues the stream) or msgReset (the
// sender started a new gob stream with this message: it threw away an
// encoded message that was too large for the queue, and with it type
// descriptions the receiver never saw). The parent posts a result message
// with flag msgDead and no body when a worker has exited: the queue orders
// it after every result the worker committed, so the parent's reader sees
// all of a worker's results before it handles its death. A worker posts a
// message with flag msgReady and no body once its initializer has
// succeeded, before it takes its first task: only a worker that dies
// before that is a start failure (one killed while idle is not).
//
// A chunk's results are normally one message; if that is too large, the
// worker sends it in halves, in order, so the parent always holds a reported
// prefix of every chunk (resultMsg.Lo).
//
// Each worker also shares with the parent a small control array (an
// shm.Int64Array of ctlLen words, every access atomic):
//
//	ctl[ctlRec]   the in-flight record; written by the worker only, read
//	              by the parent. Before the item at position i of chunk id
//	              the worker stores recWord(id, i+1), after the item
//	              recWord(id, 0), after the chunk 0. The parent reads it
//	              after the worker has been reaped (a worker found dead
//	              inside an item of the chunk it holds first was killed by
//	              that item, and only that item fails) and when a call is
//	              cancelled.
//	ctl[ctlCancel+k], k < maxOutstanding
//	              cancelled chunks: written by the parent only (under
//	              Pool.mu), read by the worker. The ID of a chunk the
//	              worker holds whose call was cancelled; a slot is reused
//	              once the chunk it names has been fully reported.
//
// Cancelling a call
//
// A cancelled call must leave nothing of its own running or queued on any
// worker. Its chunks in the parent's pending list are dropped; but a chunk
// may already sit in a worker's task queue, behind another call's, or be
// taken by a worker that has not yet recorded it, and the parent cannot
// take a message back out of a queue. So the parent and the worker
// settle each item with a store-then-load handshake on ctl:
//
//	worker, before each item:        parent, cancelling call j:
//	  store ctl[ctlRec] = (id, i+1)    store each chunk id of j it holds
//	  load the cancel slots              in a free cancel slot
//	  id among them: skip the chunk    load ctl[ctlRec]
//	  else: run the item               inside an item of a chunk of j:
//	                                     SIGKILL the worker
//
// The accesses are sequentially consistent (sync/atomic, on the same
// physical memory in both processes), so at least one side sees the
// other's store: either the worker sees the slot and skips the chunk, or
// the parent sees the record and kills the worker before, or while, its
// item runs (both may happen, which costs a replacement and nothing
// else). A worker that skips a chunk reports it with Fail set, which the
// parent applies to a call that is already over: the chunk leaves the
// worker's list and nothing is delivered. A worker between two items of
// one of j's chunks, or about to take one, is not killed: it skips. So a
// cancel kills exactly the workers running one of its items, and no item
// of the call starts after cancelJob has returned.

const (
	msgCont  byte = 0
	msgReset byte = 1
	msgDead  byte = 2
	msgReady byte = 3

	serialLen = 8
)

// The words of a worker's control array; see above.
const (
	ctlRec    = 0
	ctlCancel = 1
	ctlLen    = ctlCancel + maxOutstanding
)

// skipMsg is the Fail text of a chunk a worker skipped because its call
// was cancelled. Nobody sees it: the call is over when it arrives.
const skipMsg = "spawn: pool worker skipped the chunk of a cancelled call"

// cancelled reports whether chunk id is in ctl's cancel slots.
func cancelled(ctl *shm.Int64Array, id uint64) bool {
	for k := range maxOutstanding {
		if uint64(ctl.Load(ctlCancel+k)) == id {
			return true
		}
	}
	return false
}

// recWord is the in-flight record for chunk id, position pos1-1 (pos1 = 0:
// between items). Only the low 32 bits of id are kept.
func recWord(id uint64, pos1 int) int64 {
	return int64(uint64(uint32(id))<<32 | uint64(uint32(pos1)))
}

// recChunk returns the low 32 bits of the chunk ID in record r.
func recChunk(r int64) uint32 { return uint32(uint64(r) >> 32) }

// recPos returns the position + 1 of the item running in record r (0:
// none).
func recPos(r int64) int { return int(uint32(uint64(r))) }

// taskMsg is one chunk of inputs. Nil lists the positions of nil pointers
// in Items (see withoutNils).
type taskMsg[In any] struct {
	ID    uint64
	Items []In
	Nil   []int
}

// withoutNils returns xs ready for gob, which refuses a nil pointer as an
// element of a slice: if T is a pointer type and xs holds nil, a copy of
// xs with each nil replaced by a pointer to a zero value, and the
// positions of the nils, which the receiver restores (restoreNils). (A box
// struct{V T} would not do: gob omits a field whose pointee is zero, so a
// pointer to a zero value would arrive as nil.) Otherwise xs itself.
func withoutNils[T any](xs []T) ([]T, []int) {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Pointer {
		return xs, nil
	}
	var zero T
	var cp []T
	var nils []int
	for i := range xs {
		if any(xs[i]) != any(zero) {
			continue
		}
		if cp == nil {
			cp = append([]T(nil), xs...)
		}
		cp[i] = reflect.New(t.Elem()).Interface().(T)
		nils = append(nils, i)
	}
	if cp == nil {
		return xs, nil
	}
	return cp, nils
}

// restoreNils sets xs[i] to nil (zero) for each position in nils that is
// in range.
func restoreNils[T any](xs []T, nils []int) {
	var zero T
	for _, i := range nils {
		if i >= 0 && i < len(xs) {
			xs[i] = zero
		}
	}
}

// resultMsg reports the results of the items at positions Lo .. Lo+N-1 of
// chunk ID. Errs lists the items that failed (their Outs are zero); Outs
// is nil if every item failed. Fail,
// if set, fails every unreported item of the chunk (the worker could not
// decode it).
type resultMsg[Out any] struct {
	ID   uint64
	Lo   int
	N    int
	Outs []Out
	Nil  []int // positions in Outs of nil pointers (see withoutNils)
	Errs []itemErr
	Fail string
}

type itemErr struct {
	Pos     int
	Msg     string
	Panic   bool
	Stack   string
	Matches []string // ErrorKeys of the error (or of a panic value that is one)
}

// workerSetup is a worker's argument. If Init is set, the initializer's
// argument follows it on the argument stream.
type workerSetup struct {
	Tasks    *ipcqueue.Queue
	Results  *ipcqueue.Queue
	Ctl      *shm.Int64Array // ctlLen words; see the wire protocol
	Serial   uint64
	MaxTasks int
	Spin     int64
	Init     string
	InitTyp  string
	// Hold is a test hook (nil in production): see hold.
	Hold *shm.Int64Array
}

// Points at which a worker can be held by a test (workerSetup.Hold).
const (
	holdTaken   = 1 // a chunk decoded, before its first item is recorded
	holdChecked = 2 // an item recorded and found not cancelled, before it runs
)

// The words of a hold array: the point to hold at (0: none), how many
// times a worker has arrived there, and how many of those the test has
// released. Written by the test and the workers, atomically.
const (
	holdAt = iota
	holdArrived
	holdReleased
	holdLen
)

// hold waits, if the test asked for a hold at point, until the test
// releases this arrival. It sleeps in steps: a test's worker may wait
// long.
func (s *workerSetup) hold(point int64) {
	h := s.Hold
	if h == nil || h.Load(holdAt) != point {
		return
	}
	n := h.Add(holdArrived, 1)
	for h.Load(holdReleased) < n {
		time.Sleep(time.Millisecond)
	}
}

// getInto gets the next message from q into *buf, growing it as needed,
// and returns it; it stays valid until the next call with buf. Decoders
// copy what they keep, so the pool's readers reuse one buffer rather than
// allocating every message.
func getInto(ctx context.Context, q *ipcqueue.Queue, buf *[]byte) ([]byte, error) {
	for {
		n, err := q.GetInto(ctx, *buf)
		if err == io.ErrShortBuffer {
			*buf = make([]byte, max(n, 2*len(*buf)))
			continue
		}
		if err != nil {
			return nil, err
		}
		return (*buf)[:n], nil
	}
}

// msgReader feeds one message at a time to a gob.Decoder that lives across
// messages. It is an io.ByteReader, so gob does not buffer ahead.
type msgReader struct{ b []byte }

func (r *msgReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func (r *msgReader) ReadByte() (byte, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c, nil
}

// streamDec decodes a stream of messages whose first byte is the flag.
type streamDec struct {
	r   msgReader
	dec *gob.Decoder
}

func (s *streamDec) decode(flag byte, body []byte, v any) error {
	if s.dec == nil || flag == msgReset {
		s.dec = gob.NewDecoder(&s.r)
	}
	s.r.b = body
	if err := s.dec.Decode(v); err != nil {
		s.dec = nil // the stream is lost; only a reset can resume it
		return err
	}
	if len(s.r.b) != 0 {
		s.dec = nil
		return fmt.Errorf("%d bytes after the message", len(s.r.b))
	}
	return nil
}

// streamEnc encodes a stream of messages into buf after a fixed prefix
// (the result messages' serial) and the flag byte.
type streamEnc struct {
	prefix []byte
	buf    bytes.Buffer
	enc    *gob.Encoder
	reset  bool
}

// encode returns the message for v; it stays valid until the next call.
func (s *streamEnc) encode(v any) ([]byte, error) {
	s.buf.Reset()
	s.buf.Write(s.prefix)
	if s.enc == nil {
		s.enc = gob.NewEncoder(&s.buf)
		s.reset = true
	}
	if s.reset {
		s.buf.WriteByte(msgReset)
	} else {
		s.buf.WriteByte(msgCont)
	}
	if err := s.enc.Encode(v); err != nil {
		s.enc = nil
		return nil, err
	}
	s.reset = false
	return s.buf.Bytes(), nil
}

// drop forgets the message just encoded: the next one starts a new stream.
func (s *streamEnc) drop() { s.enc = nil }

// workerEntry returns the registry entry of the worker loop for task fn.
func workerEntry[In, Out any](name string, fn func(context.Context, In) (Out, error)) *entry {
	return &entry{
		name: name,
		typ:  "spawn.Task[" + reflect.TypeFor[In]().String() + "," + reflect.TypeFor[Out]().String() + "]",
		run: func(ctx context.Context, dec *gob.Decoder) error {
			var s workerSetup
			if err := dec.Decode(&s); err != nil {
				return &argError{err}
			}
			if s.Tasks == nil || s.Results == nil || s.Ctl == nil || s.Ctl.Len() != ctlLen ||
				s.Hold != nil && s.Hold.Len() != holdLen {
				return &argError{errors.New("incomplete worker setup")}
			}
			return workerLoop(ctx, fn, &s, dec)
		},
	}
}

// workerLoop runs in the worker process: initializer, then chunks until the
// task queue is closed or the worker has run its MaxTasks.
func workerLoop[In, Out any](ctx context.Context, fn func(context.Context, In) (Out, error), s *workerSetup, dec *gob.Decoder) error {
	spin := time.Duration(s.Spin)
	s.Tasks.SetSpin(spin)
	s.Results.SetSpin(spin)
	if s.Init != "" {
		e := lookup(s.Init)
		if e == nil {
			return fmt.Errorf("spawn: pool initializer %q: %w", s.Init, ErrUnregistered)
		}
		if e.typ != s.InitTyp {
			return fmt.Errorf("spawn: pool initializer %q: %w", s.Init, ErrMismatch)
		}
		if err := e.run(ctx, dec); err != nil {
			return fmt.Errorf("spawn: pool initializer %s: %w", s.Init, err)
		}
	}
	ready := binary.LittleEndian.AppendUint64(nil, s.Serial)
	if err := s.Results.Put(ctx, append(ready, msgReady)); err != nil {
		return fmt.Errorf("spawn: pool worker: %w", err)
	}
	var (
		in   streamDec
		out  = streamEnc{prefix: binary.LittleEndian.AppendUint64(nil, s.Serial)}
		done int
		buf  = make([]byte, 4<<10)
	)
	send := func(m *resultMsg[Out]) error { return sendResults(ctx, s.Results, &out, m) }
	for {
		msg, err := getInto(ctx, s.Tasks, &buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("spawn: pool worker: %w", err)
		}
		var tm taskMsg[In]
		if len(msg) == 0 {
			return errors.New("spawn: pool worker: empty task message")
		}
		if err := in.decode(msg[0], msg[1:], &tm); err != nil {
			// Fail the chunk (its ID is the first field, so it may have
			// been decoded) and exit: the stream is lost.
			send(&resultMsg[Out]{ID: tm.ID, Fail: "spawn: pool worker cannot decode its task: " + err.Error()})
			return fmt.Errorf("spawn: pool worker: decode task: %w", err)
		}
		restoreNils(tm.Items, tm.Nil)
		s.hold(holdTaken)
		res := resultMsg[Out]{ID: tm.ID, N: len(tm.Items), Outs: make([]Out, len(tm.Items))}
		ran := 0
		for i, x := range tm.Items {
			// The handshake with cancelJob (see the wire protocol): the
			// record first, then the cancel slots.
			s.Ctl.Store(ctlRec, recWord(tm.ID, i+1))
			if cancelled(s.Ctl, tm.ID) {
				res = resultMsg[Out]{ID: tm.ID, Fail: skipMsg}
				break
			}
			s.hold(holdChecked)
			o, ierr := callTask(ctx, fn, x, i)
			s.Ctl.Store(ctlRec, recWord(tm.ID, 0))
			ran++
			if ierr != nil {
				res.Errs = append(res.Errs, *ierr)
			} else {
				res.Outs[i] = o
			}
		}
		s.Ctl.Store(ctlRec, 0)
		if err := send(&res); err != nil {
			return err
		}
		done += ran
		if s.MaxTasks > 0 && done >= s.MaxTasks {
			return nil
		}
	}
}

// callTask runs one item, turning an error or a panic into an itemErr.
func callTask[In, Out any](ctx context.Context, fn func(context.Context, In) (Out, error), x In, pos int) (o Out, ie *itemErr) {
	defer func() {
		if r := recover(); r != nil {
			ie = &itemErr{Pos: pos, Msg: fmt.Sprint(r), Panic: true, Stack: string(debug.Stack())}
			if err, ok := r.(error); ok {
				ie.Matches = ErrorKeys(err)
			}
		}
	}()
	o, err := fn(ctx, x)
	if err != nil {
		return o, &itemErr{Pos: pos, Msg: err.Error(), Matches: ErrorKeys(err)}
	}
	return o, nil
}

// sendResults puts m on the result queue, in halves if it is too large
// for one message or does not encode (an interface holding an
// unregistered type, say): halving goes down to the single item, so only
// an item that is itself too large, or that itself does not encode, fails.
func sendResults[Out any](ctx context.Context, q *ipcqueue.Queue, s *streamEnc, m *resultMsg[Out]) error {
	wire := *m
	wire.Outs, wire.Nil = withoutNils(m.Outs)
	b, err := s.encode(&wire)
	if err == nil && len(b) <= q.MaxMsg() {
		return q.Put(ctx, b)
	}
	s.drop()
	if m.N > 1 {
		h := m.N / 2
		a, c := splitResults(m, h)
		if err := sendResults(ctx, q, s, a); err != nil {
			return err
		}
		return sendResults(ctx, q, s, c)
	}
	msg := fmt.Sprintf("spawn: result of %d bytes exceeds the result queue's maximum message (%d)", len(b), q.MaxMsg())
	if err != nil {
		msg = "spawn: encode result: " + err.Error()
	}
	// Outs nil: nothing of the failed values is encoded.
	f := &resultMsg[Out]{ID: m.ID, Lo: m.Lo, N: m.N}
	for i := range m.N {
		f.Errs = append(f.Errs, itemErr{Pos: m.Lo + i, Msg: msg})
	}
	b, err = s.encode(f)
	if err != nil {
		return fmt.Errorf("spawn: pool worker: %w", err)
	}
	return q.Put(ctx, b)
}

// splitResults splits m at h items (positions are absolute in the chunk).
func splitResults[Out any](m *resultMsg[Out], h int) (a, c *resultMsg[Out]) {
	a = &resultMsg[Out]{ID: m.ID, Lo: m.Lo, N: h}
	c = &resultMsg[Out]{ID: m.ID, Lo: m.Lo + h, N: m.N - h}
	if m.Outs != nil {
		a.Outs, c.Outs = m.Outs[:h], m.Outs[h:]
	}
	for _, e := range m.Errs {
		if e.Pos < m.Lo+h {
			a.Errs = append(a.Errs, e)
		} else {
			c.Errs = append(c.Errs, e)
		}
	}
	return a, c
}
