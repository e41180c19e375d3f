//go:build linux

package ipctopic

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/opentest"
	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// subArg asks a spawned child to subscribe to T and receive until EOF,
// expecting N test messages from 0 on.
type subArg struct {
	T *Topic
	N int
}

var spawnedSub = spawn.Register("ipctopic.sub", func(ctx context.Context, a subArg) error {
	defer a.T.Close()
	s, err := a.T.Subscribe(ctx)
	if err != nil {
		return err
	}
	first, n, err := receiveAll(ctx, s, nil)
	if !errors.Is(err, io.EOF) {
		return err
	}
	if first != 0 || n != a.N {
		return fmt.Errorf("received %d messages from %d on, want %d from 0", n, first, a.N)
	}
	return nil
})

// TestAnonymousHandoff: an anonymous topic reaches a child started by
// spawn inside its argument, attached to the same memory.
func TestAnonymousHandoff(t *testing.T) {
	const n = 1000
	tp, err := New(&Options{Slots: 8, MaxMsg: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	p, err := spawn.Start(t.Context(), spawnedSub, subArg{T: tp, N: n}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for tp.Stats().Subscribers == 0 {
		if err := ctxSleep(t); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64)
	for i := range uint64(n) {
		if err := tp.Publish(t.Context(), makeMsg(buf, i)); err != nil {
			t.Fatal(err)
		}
	}
	tp.Shutdown()
	if err := p.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

// TestHandleErrors: a heap topic cannot travel; a handle to a segment of
// another kind does not decode as a topic; a closed handle does not encode.
func TestHandleErrors(t *testing.T) {
	heap := heapTopic(t, nil)
	if _, err := heap.GobEncode(); !errors.Is(err, shm.ErrHeap) {
		t.Fatalf("GobEncode of a heap topic = %v, want shm.ErrHeap", err)
	}
	name := helperproc.Name(t)
	q, err := ipcqueue.Create(name, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ipcqueue.Remove(name)
	defer q.Close()
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(q); err != nil {
		t.Fatal(err)
	}
	var tp Topic
	if err := gob.NewDecoder(&buf).Decode(&tp); !errors.Is(err, shm.ErrKind) {
		t.Fatalf("a queue decoded as a topic: %v", err)
	}
	if _, err := Open(q.Segment().Name()); !errors.Is(err, shm.ErrKind) {
		t.Fatalf("Open of a queue = %v, want shm.ErrKind", err)
	}
	named := namedTopic(t, nil)
	named.Close()
	if _, err := named.GobEncode(); err == nil {
		t.Fatal("a closed handle encoded")
	}
}

// TestOpenRacingCreate: an Open racing Create finds the topic whole or
// finds no name, never a control block not yet written (Create writes it
// before the segment is named: shm.Kind.CreateInit).
func TestOpenRacingCreate(t *testing.T) {
	opts := &Options{Slots: 4, MaxMsg: 8, Subscribers: 1}
	opentest.RacingOpens(t, 1000, helperproc.Name(t),
		func(name string) (func() error, error) {
			tp, err := Create(name, opts)
			if err != nil {
				return nil, err
			}
			return tp.Close, nil
		},
		func(name string) (func() error, error) {
			tp, err := Open(name)
			if err != nil {
				return nil, err
			}
			if tp.Slots() != 4 || tp.MaxMsg() != 8 {
				tp.Close()
				return nil, fmt.Errorf("opened a topic of %d slots of %d bytes, want 4 of 8", tp.Slots(), tp.MaxMsg())
			}
			return tp.Close, nil
		}, Remove)
}
