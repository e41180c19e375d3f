package main

import (
	"context"
	"encoding/binary"
	"os"
	"time"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/semaphore"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// The other side of every cross-process figure runs in a child process of
// this binary, started by spawn: the way a user of ipckit would start it.

// exitEnv makes this binary exit at once: the os/exec peer of spawn.
const exitEnv = "IPCBENCH_EXIT_AT_ONCE"

// nothing is the function spawn runs for spawn_start_wait_ms.
var nothing = spawn.Register("ipcbench.nothing", func(context.Context, struct{}) error { return nil })

// streamArg asks a child to produce N messages of Size bytes.
type streamArg struct {
	N, Size int
	Q       *ipcqueue.Queue // nil: write to stdout (a pipe) or stdin (a socket) instead
	Socket  bool
}

// produce writes N messages, each stamped with its sequence number.
var produce = spawn.Register("ipcbench.produce", func(ctx context.Context, a streamArg) error {
	msg := make([]byte, a.Size)
	out := os.Stdout
	if a.Socket {
		out = os.Stdin
	}
	if a.Q != nil {
		defer a.Q.Close()
	}
	for i := range a.N {
		binary.LittleEndian.PutUint64(msg, uint64(i))
		var err error
		if a.Q != nil {
			err = a.Q.Put(ctx, msg)
		} else {
			_, err = out.Write(msg)
		}
		if err != nil {
			return err
		}
	}
	return nil
})

// echoArg asks a child to send back every message it gets, until a message
// of length 1.
type echoArg struct {
	In, Out *ipcqueue.Queue // nil: echo on stdin, a socket
	Spin    time.Duration
}

var echo = spawn.Register("ipcbench.echo", func(ctx context.Context, a echoArg) error {
	buf := make([]byte, 1<<16)
	if a.In == nil {
		for {
			n, err := os.Stdin.Read(buf)
			if err != nil || n == 1 {
				return err
			}
			if _, err := os.Stdin.Write(buf[:n]); err != nil {
				return err
			}
		}
	}
	defer a.In.Close()
	defer a.Out.Close()
	a.In.SetSpin(a.Spin)
	a.Out.SetSpin(a.Spin)
	for {
		n, err := a.In.GetInto(ctx, buf)
		if err != nil || n == 1 {
			return err
		}
		if err := a.Out.Put(ctx, buf[:n]); err != nil {
			return err
		}
	}
})

// pongArg asks a child to take the odd turns of a lock ping-pong.
type pongArg struct {
	Mutex     *semaphore.Mutex // nil: the raw flock peer, on FlockPath
	FlockPath string
	Turn      *shm.Int64
}

var pong = spawn.Register("ipcbench.pong", func(ctx context.Context, a pongArg) error {
	defer a.Turn.Close()
	var l locker = a.Mutex
	if a.Mutex == nil {
		f, err := os.OpenFile(a.FlockPath, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		l = rawFlock{f}
	} else {
		defer a.Mutex.Close()
	}
	return takeTurns(l, a.Turn, 1, -1)
})

// takeTurns plays one side of a lock ping-pong: under the lock, it moves
// turn from a value of its parity to the next, rounds times, or until turn
// goes negative if rounds < 0. Each move is one handoff of the lock.
func takeTurns(l locker, turn *shm.Int64, parity int64, rounds int) error {
	for done := 0; done != rounds; {
		if err := l.Lock(); err != nil {
			return err
		}
		t := turn.Load()
		if t >= 0 && t%2 == parity {
			turn.Store(t + 1)
			done++
		}
		if err := l.Unlock(); err != nil {
			return err
		}
		if t < 0 {
			return nil
		}
	}
	return nil
}
