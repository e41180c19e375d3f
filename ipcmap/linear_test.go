//go:build linux

package ipcmap

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
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

// TestLinearizable records a history of 4 goroutines doing random
// operations on 3 keys of a small heap map (8 slots, so the keys share
// probe chains), and checks it with porcupine.
func TestLinearizable(t *testing.T) {
	m := heapMap(t, &Options{Entries: 4, Bytes: 4096})
	ctx := t.Context()
	keys := []string{"x", "y", "z"}
	start := time.Now()
	now := func() int64 { return time.Since(start).Nanoseconds() }
	var mu sync.Mutex
	var history []porcupine.Operation
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), rand.Uint64()))
			for i := range 250 {
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
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	switch res := porcupine.CheckOperationsTimeout(kvModel, history, 30*time.Second); res {
	case porcupine.Illegal:
		t.Fatalf("history of %d operations is not linearizable", len(history))
	case porcupine.Unknown:
		t.Logf("porcupine timed out on %d operations: no violation found", len(history))
	}
}
