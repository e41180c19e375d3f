package cluster

import (
	"bytes"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/ipckit/ipckit/spawn"
)

// Wire format
//
// A task message is one chunk: items lo .. lo+len(Items)-1 of one call,
// gob(taskChunk[In]) on subject <Stream>.task.<task>.<pool>.<call>, with
// the headers below. A result message is gob(resultChunk[Out]) on
// <Stream>.res.<pool>, with the same pool, call and lo headers (lo may be
// past the chunk's own lo: a worker splits a result too large for one
// message). Each message gets its own gob stream (type descriptions
// included), since any worker may take any chunk.

const (
	hdrTask  = "Ipckit-Task"  // the task's registered name
	hdrTypes = "Ipckit-Types" // "In,Out" as reflect prints them
	hdrPool  = "Ipckit-Pool"  // the calling pool's ID
	hdrCall  = "Ipckit-Call"  // the call's number in its pool
	hdrLo    = "Ipckit-Lo"    // the index of the message's first item in the call
)

// wireItem wraps a value so that gob sends any type, a nil pointer
// included (gob refuses a nil pointer at top level or in a slice, but
// omits a nil field).
type wireItem[T any] struct{ V T }

// taskChunk is a task message's body.
type taskChunk[In any] struct {
	Items []wireItem[In]
}

// resultChunk is a result message's body: the outputs of N items, the
// failures among them, or Fail for all of them (the worker could not run
// the chunk at all).
type resultChunk[Out any] struct {
	N    int
	Outs []wireItem[Out]
	Errs []itemErr
	Fail string
}

// itemErr is one item's failure on the wire: a *spawn.TaskError, or a
// *spawn.WorkerError when Worker is set.
type itemErr struct {
	Pos      int // in the message
	Msg      string
	Panic    bool
	Stack    string
	Pid      int
	Worker   bool
	Signal   int
	ExitCode int
	Stderr   string
	Matches  []string // spawn.ErrorKeys of the error: its identity across the network
}

// toItemErr turns a local pool's error for item pos into its wire form.
func toItemErr(pos int, err error) itemErr {
	var te *spawn.TaskError
	var we *spawn.WorkerError
	switch {
	case errors.As(err, &te):
		return itemErr{Pos: pos, Msg: te.Msg, Panic: te.Panic, Stack: te.Stack, Pid: te.Pid, Matches: te.Matches}
	case errors.As(err, &we):
		ie := itemErr{Pos: pos, Pid: we.Pid, Worker: true, ExitCode: we.ExitCode, Stderr: we.Stderr}
		if s, ok := we.Signal.(syscall.Signal); ok {
			ie.Signal = int(s)
		}
		if we.Err != nil {
			ie.Msg = we.Err.Error()
		}
		return ie
	}
	return itemErr{Pos: pos, Msg: err.Error(), Matches: spawn.ErrorKeys(err)}
}

// remoteError is the text of a worker's error that crossed the network:
// only the text survives.
type remoteError struct{ msg string }

func (e *remoteError) Error() string { return e.msg }

// toError rebuilds item index's error from its wire form.
func (ie *itemErr) toError(index int) error {
	if !ie.Worker {
		return &spawn.TaskError{Task: index, Pid: ie.Pid, Msg: ie.Msg, Panic: ie.Panic, Stack: ie.Stack, Matches: ie.Matches}
	}
	we := &spawn.WorkerError{Task: index, Pid: ie.Pid, ExitCode: ie.ExitCode, Stderr: ie.Stderr}
	if ie.Signal != 0 {
		we.Signal = syscall.Signal(ie.Signal)
	}
	if ie.Msg != "" {
		we.Err = &remoteError{ie.Msg}
	}
	return we
}

// encode returns v's gob encoding in a stream of its own.
func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// decode decodes data, a stream of its own, into v.
func decode(data []byte, v any) error {
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

// checkTypes refuses In and Out that gob rejects whatever their value:
// every item would fail.
func checkTypes[In, Out any]() error {
	if err := gob.NewEncoder(io.Discard).Encode(&taskChunk[In]{}); err != nil {
		return fmt.Errorf("%w: input %v: %w", spawn.ErrType, reflect.TypeFor[In](), err)
	}
	if err := gob.NewEncoder(io.Discard).Encode(&resultChunk[Out]{}); err != nil {
		return fmt.Errorf("%w: output %v: %w", spawn.ErrType, reflect.TypeFor[Out](), err)
	}
	return nil
}

// typesOf is the Ipckit-Types header of a task of In and Out.
func typesOf[In, Out any]() string {
	return reflect.TypeFor[In]().String() + "," + reflect.TypeFor[Out]().String()
}

var plainToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// token returns name as one subject token and consumer-name part: itself
// if it is made of letters, digits, '-' and '_' only, else "x" and its
// bytes in hex.
func token(name string) string {
	if plainToken.MatchString(name) && name[0] != 'x' {
		return name
	}
	return "x" + hex.EncodeToString([]byte(name))
}

// names are the streams, subjects and consumers under one Stream prefix.
type names struct{ prefix string }

func (n names) tasksStream() string             { return n.prefix + "_TASKS" }
func (n names) resultsStream() string           { return n.prefix + "_RESULTS" }
func (n names) taskConsumer(task string) string { return "task_" + token(task) }
func (n names) taskSubject(task, pool string, call uint64) string {
	return n.prefix + ".task." + token(task) + "." + pool + "." + strconv.FormatUint(call, 10)
}
func (n names) taskFilter(task string) string    { return n.prefix + ".task." + token(task) + ".>" }
func (n names) poolTasks(pool string) string     { return n.prefix + ".task.*." + pool + ".>" }
func (n names) resultSubject(pool string) string { return n.prefix + ".res." + pool }
func (n names) cancelSubject(pool string) string { return n.prefix + ".cancel." + pool }
func (n names) cancelAll() string                { return n.prefix + ".cancel.*" }
func (n names) maxDeliverAdvisory(task string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + n.tasksStream() + "." + n.taskConsumer(task)
}

// validPrefix checks a Stream option.
func validPrefix(p string) error {
	if !plainToken.MatchString(p) {
		return fmt.Errorf("cluster: stream name %q: letters, digits, '-' and '_' only: %w", p, os.ErrInvalid)
	}
	return nil
}

// msgRef is where a message belongs: its pool, call and first item.
type msgRef struct {
	pool string
	call uint64
	lo   int
}

func (r msgRef) id(kind string) string {
	return r.pool + "." + strconv.FormatUint(r.call, 10) + "." + strconv.Itoa(r.lo) + "." + kind
}

func (r msgRef) setHeader(h nats.Header) {
	h.Set(hdrPool, r.pool)
	h.Set(hdrCall, strconv.FormatUint(r.call, 10))
	h.Set(hdrLo, strconv.Itoa(r.lo))
}

// refOf reads a message's pool, call and lo headers.
func refOf(h nats.Header) (msgRef, error) {
	call, err1 := strconv.ParseUint(h.Get(hdrCall), 10, 64)
	lo, err2 := strconv.Atoi(h.Get(hdrLo))
	r := msgRef{pool: h.Get(hdrPool), call: call, lo: lo}
	if err := errors.Join(err1, err2); err != nil || r.pool == "" || lo < 0 {
		return r, fmt.Errorf("cluster: malformed message headers %v: %w", h, errors.Join(err, os.ErrInvalid))
	}
	return r, nil
}
