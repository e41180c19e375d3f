//go:build linux

package ipcmap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
)

// killSelf ends this helper process with SIGKILL, as a crash would.
func killSelf() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(time.Hour)
}

// stall says line on stdout and waits to be killed: a live process stopped
// where it stands.
func stall(line string) {
	fmt.Println(line)
	time.Sleep(time.Hour)
}

// crashOp is one write of the crash tests, on the map prefill makes.
type crashOp struct {
	name     string // the case, and the helper's argument
	op       string // the operation, as faults name it
	key      string
	val, old string           // the new value, and CompareAndSwap's old one
	steps    []step           // the steps the write passes
	run      func(*Map) error // does the write
	// opts and fill make the map the write starts from, when set; the
	// default is a map of 64 entries and 4 KiB holding prefill().
	opts *Options
	fill func(ctx context.Context, m *Map) (map[string]string, error)
}

var allSteps = []step{stepLocked, stepAllocated, stepKey, stepWritten, stepPublished, stepSeq, stepFreed, stepCounted}

var crashOps = []crashOp{
	{name: "set-update", op: opSet, key: "k1", val: "a new value for k1, longer than the old"},
	{name: "set-insert", op: opSet, key: "fresh", val: "a fresh value"},
	{name: "cas", op: opCAS, key: "k3", old: "old value of k3", val: "swapped"},
	{name: "loadorstore", op: opLoadOrStore, key: "fresh2", val: "stored"},
	{name: "delete", op: opDelete, key: "k2",
		steps: []step{stepLocked, stepPublished, stepSeq, stepFreed, stepCounted, stepCleaning}},
	// A delete that purges (see "Deleting"): its key is the last of
	// purgeKeys, and the map is purgeFill's.
	{name: "delete-purge", op: opDelete, key: purgeKeys[len(purgeKeys)-1][0],
		steps: []step{stepCounted, stepCleaning},
		opts:  &Options{Entries: purgeSlots / 2, Bytes: 4096}, fill: purgeFill},
}

// purgeSlots is the table size of the delete-purge case, and purgeKeys
// its pairs of keys: the first of pair j has home slot 3j, the second
// 3j+1. There is one pair more than the deleted slots a purge waits for.
const purgeSlots = 32

var purgeKeys = func() [][2]string {
	var pairs [][2]string
	for j := range purgeSlots/4 + 1 {
		pairs = append(pairs, [2]string{keyWithHome(uint64(3*j), "x"), keyWithHome(uint64(3*j+1), "y")})
	}
	return pairs
}()

// keyWithHome returns the first key prefix+number whose home slot in a
// table of purgeSlots is home.
func keyWithHome(home uint64, prefix string) string {
	for i := 0; ; i++ {
		if k := fmt.Sprint(prefix, i); hash([]byte(k))&(purgeSlots-1) == home {
			return k
		}
	}
}

// purgeFill writes every pair of purgeKeys, and deletes the first key of
// each but the last pair: each deleted slot is followed by a live one, so
// no delete empties it, and none is on the chain of another key. So the
// next delete of a first key (the case's) finds one deleted slot too many,
// and purges them all.
func purgeFill(ctx context.Context, m *Map) (map[string]string, error) {
	want := map[string]string{}
	for j, p := range purgeKeys {
		for _, k := range p {
			if err := m.Set(ctx, []byte(k), []byte("v"+k)); err != nil {
				return nil, err
			}
			want[k] = "v" + k
		}
		if j < len(purgeKeys)-1 {
			if _, err := m.Delete(ctx, []byte(p[0])); err != nil {
				return nil, err
			}
			delete(want, p[0])
		}
	}
	if n := m.w.tombs.Load(); n != purgeSlots/4 {
		return nil, fmt.Errorf("purgeFill left %d deleted slots, want %d", n, purgeSlots/4)
	}
	return want, nil
}

func init() {
	for i := range crashOps {
		c := &crashOps[i]
		if c.steps == nil {
			c.steps = allSteps
		}
		ctx := context.Background()
		switch c.op {
		case opSet:
			c.run = func(m *Map) error { return m.Set(ctx, []byte(c.key), []byte(c.val)) }
		case opCAS:
			c.run = func(m *Map) error {
				ok, err := m.CompareAndSwap(ctx, []byte(c.key), []byte(c.old), []byte(c.val))
				if err == nil && !ok {
					err = errors.New("CompareAndSwap did not swap")
				}
				return err
			}
		case opLoadOrStore:
			c.run = func(m *Map) error { _, _, err := m.LoadOrStore(ctx, []byte(c.key), []byte(c.val)); return err }
		case opDelete:
			c.run = func(m *Map) error { _, err := m.Delete(ctx, []byte(c.key)); return err }
		}
	}
}

// prefill is the map every crash case starts from.
func prefill() map[string]string {
	want := map[string]string{}
	for i := range 5 {
		want[fmt.Sprint("k", i)] = fmt.Sprint("old value of k", i)
	}
	return want
}

// repairCase is a Set of k1 whose writer dies inside the repair that
// comes before it (crashwrite's fault names opRepair).
var repairCase = crashOp{name: "repair", op: opRepair, key: "k1", val: "set after a repair",
	run: func(m *Map) error { return m.Set(context.Background(), []byte("k1"), []byte("set after a repair")) }}

func crashCase(name string) *crashOp {
	if name == repairCase.name {
		return &repairCase
	}
	for i := range crashOps {
		if crashOps[i].name == name {
			return &crashOps[i]
		}
	}
	return nil
}

func registerHelpers() {
	// crashwrite NAME CASE STEP: do the write of CASE on the named map,
	// killing this process with SIGKILL at STEP. Printing "returned"
	// means the write never reached STEP.
	helperproc.Register("crashwrite", func(a []string) error {
		m, err := Open(a[0])
		if err != nil {
			return err
		}
		c := crashCase(a[1])
		at, _ := strconv.Atoi(a[2])
		m.faults.at = func(op string, s step) {
			if op == c.op && s == step(at) {
				killSelf()
			}
		}
		err = c.run(m)
		fmt.Println("returned")
		return err
	})
	// stallwrite NAME: Set k1 on the named map and stop inside it, holding
	// the lock with the new record written and not published; say
	// "stalled" and wait to be killed.
	helperproc.Register("stallwrite", func(a []string) error {
		m, err := Open(a[0])
		if err != nil {
			return err
		}
		m.faults.at = func(op string, s step) {
			if s == stepWritten {
				stall("stalled")
			}
		}
		return m.Set(context.Background(), []byte("k1"), []byte("never published"))
	})
	// stallread NAME: Get k1 on the named map and stop inside the read,
	// between its loads of the slot's seq; say "reading" and wait to be
	// killed.
	helperproc.Register("stallread", func(a []string) error {
		m, err := Open(a[0])
		if err != nil {
			return err
		}
		m.w.readFault = func() { stall("reading") }
		_, _, err = m.Get([]byte("k1"))
		return err
	})
	registerProcessHelpers()
}
