//go:build linux

package ipcmap

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"golang.org/x/sys/unix"

	"github.com/ipckit/ipckit/internal/helperproc"
)

// A history of a few keys, checked for linearizability by porcupine
// against a sequential map, one key at a time.

type kvInput struct {
	op       string // get, set, delete, cas, los
	key      string
	val, old string
}

type kvOutput struct {
	val string
	ok  bool // found, deleted, swapped, loaded
	err error
}

// kvState is one key's state: whether it is present and its value.
type kvState struct {
	present bool
	val     string
}

var kvModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(kvInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return kvState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
		if out.err != nil {
			return false, s
		}
		switch in.op {
		case "get":
			return out.ok == s.present && (!s.present || out.val == s.val), s
		case "set":
			return true, kvState{true, in.val}
		case "delete":
			return out.ok == s.present, kvState{}
		case "cas":
			swap := s.present && s.val == in.old
			if out.ok != swap {
				return false, s
			}
			if swap {
				return true, kvState{true, in.val}
			}
			return true, s
		case "los":
			if out.ok != s.present || (s.present && out.val != s.val) || (!s.present && out.val != in.val) {
				return false, s
			}
			return true, kvState{true, in.val}.orIf(s)
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		return fmt.Sprintf("%s(%s, %q, %q) -> %q, %v, %v", in.op, in.key, in.val, in.old, out.val, out.ok, out.err)
	},
}

// orIf returns s if it is present (LoadOrStore loaded it), else n.
func (n kvState) orIf(s kvState) kvState {
	if s.present {
		return s
	}
	return n
}

// randomOp does one random operation of client c (its i-th) on one of
// keys, and returns it as porcupine sees it; now gives the timestamps.
func randomOp(ctx context.Context, m *Map, r *rand.Rand, keys []string, c, i int, now func() int64) porcupine.Operation {
	in := kvInput{key: keys[r.IntN(len(keys))], val: fmt.Sprint(c, ".", i), old: fmt.Sprint(r.IntN(4), ".", i-r.IntN(3))}
	var out kvOutput
	var v []byte
	call := now()
	switch r.IntN(5) {
	case 0:
		in.op = "get"
		v, out.ok, out.err = m.Get([]byte(in.key))
	case 1:
		in.op = "set"
		out.err = m.Set(ctx, []byte(in.key), []byte(in.val))
	case 2:
		in.op = "delete"
		out.ok, out.err = m.Delete(ctx, []byte(in.key))
	case 3:
		in.op = "cas"
		out.ok, out.err = m.CompareAndSwap(ctx, []byte(in.key), []byte(in.old), []byte(in.val))
	case 4:
		in.op = "los"
		v, out.ok, out.err = m.LoadOrStore(ctx, []byte(in.key), []byte(in.val))
	}
	ret := now()
	out.val = string(v)
	return porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret}
}

// checkHistory fails the test if porcupine finds history not linearizable.
func checkHistory(t *testing.T, history []porcupine.Operation) {
	switch res := porcupine.CheckOperationsTimeout(kvModel, history, 30*time.Second); res {
	case porcupine.Illegal:
		t.Fatalf("history of %d operations is not linearizable", len(history))
	case porcupine.Unknown:
		t.Logf("porcupine timed out on %d operations: no violation found", len(history))
	}
}

var linKeys = []string{"x", "y", "z"}

// TestLinearizable records a history of 4 goroutines doing random
// operations on 3 keys of a small heap map (8 slots, so the keys share
// probe chains), and checks it with porcupine.
func TestLinearizable(t *testing.T) {
	m := heapMap(t, &Options{Entries: 4, Bytes: 4096})
	start := time.Now()
	now := func() int64 { return time.Since(start).Nanoseconds() }
	var mu sync.Mutex
	var history []porcupine.Operation
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), rand.Uint64()))
			for i := range 250 {
				op := randomOp(t.Context(), m, r, linKeys, c, i, now)
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	checkHistory(t, history)
}

// monoNow is a timestamp that processes of one machine share: the
// system-wide monotonic clock, which no step of the wall clock (NTP, an
// administrator) moves, so that a history never has a return before its
// call or an order the processes did not see. (Go's time.Now carries a
// monotonic reading too, but only Since and Sub of one process use it.)
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // CLOCK_MONOTONIC exists on every Linux
	}
	return ts.Nano()
}

func init() {
	// linops NAME ID N: say "ready", wait for stdin to close, do N random
	// operations on the named map as client ID, then print each as
	// "call return op key val old outval ok" (values have no spaces;
	// "-" stands for an empty one) and "done".
	helperproc.Register("linops", func(a []string) error {
		m, err := Open(a[0])
		if err != nil {
			return err
		}
		defer m.Close()
		id, _ := strconv.Atoi(a[1])
		n, _ := strconv.Atoi(a[2])
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		r := rand.New(rand.NewPCG(uint64(id), rand.Uint64()))
		ops := make([]porcupine.Operation, n)
		for i := range ops {
			ops[i] = randomOp(context.Background(), m, r, linKeys, id, i, monoNow)
		}
		var b strings.Builder
		for _, op := range ops {
			in, out := op.Input.(kvInput), op.Output.(kvOutput)
			if out.err != nil {
				return out.err
			}
			fmt.Fprintf(&b, "%d %d %s %s %s %s %s %v\n", op.Call, op.Return, in.op, in.key, in.val, in.old, dash(out.val), out.ok)
		}
		fmt.Print(b.String(), "done\n")
		return nil
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// TestLinearizableProcesses records a history of 3 processes doing random
// operations on 3 keys of a small named map, timed on the monotonic clock
// they share, and checks it with porcupine.
func TestLinearizableProcesses(t *testing.T) {
	_, name := namedMap(t, &Options{Entries: 4, Bytes: 4096})
	var procs []*helperproc.Proc
	var stdins []io.Closer
	for id := range 3 {
		cmd := helperproc.Command(t, "linops", name, strconv.Itoa(id), "300")
		helperproc.NoExitSleep(cmd)
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		p := helperproc.Start(t, cmd)
		p.Expect(t, "ready")
		procs, stdins = append(procs, p), append(stdins, in)
	}
	for _, in := range stdins {
		in.Close()
	}
	var history []porcupine.Operation
	for id, p := range procs {
		for line := p.Line(t); line != "done"; line = p.Line(t) {
			f := strings.Fields(line)
			if len(f) != 8 {
				t.Fatalf("process %d: %q", id, line)
			}
			call, _ := strconv.ParseInt(f[0], 10, 64)
			ret, _ := strconv.ParseInt(f[1], 10, 64)
			val := f[6]
			if val == "-" {
				val = ""
			}
			history = append(history, porcupine.Operation{ClientId: id, Call: call, Return: ret,
				Input:  kvInput{op: f[2], key: f[3], val: f[4], old: f[5]},
				Output: kvOutput{val: val, ok: f[7] == "true"}})
		}
		if err := p.Cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v", id, err)
		}
	}
	checkHistory(t, history)
}
