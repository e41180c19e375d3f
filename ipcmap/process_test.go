//go:build linux

package ipcmap

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
)

const (
	chaosKeys     = 16 // keys each process owns
	chaosCounters = 4  // keys every process increments
)

func counterKey(i int) string { return fmt.Sprint("ctr-", i) }

// increment adds 1 to the 8-byte counter at key, with CompareAndSwap.
func increment(ctx context.Context, m *Map, key string) error {
	for {
		cur, ok, err := m.Get([]byte(key))
		if err != nil {
			return err
		}
		var n uint64
		if ok {
			if len(cur) != 8 {
				return fmt.Errorf("counter %s holds %q", key, cur)
			}
			n = binary.LittleEndian.Uint64(cur)
		} else {
			cur = nil
		}
		next := binary.LittleEndian.AppendUint64(nil, n+1)
		if !ok {
			if _, loaded, err := m.LoadOrStore(ctx, []byte(key), next); err != nil || !loaded {
				return err
			}
			continue
		}
		if swapped, err := m.CompareAndSwap(ctx, []byte(key), cur, next); err != nil || swapped {
			return err
		}
	}
}

// chaos does ops random operations on m as process id: on its own keys,
// each result checked against its model at once; on the shared counters;
// and reads of other processes' keys, checked whole. It returns its model
// and how many times it incremented each counter.
func chaos(ctx context.Context, m *Map, id, ops int, seed uint64) (map[string]string, []int, error) {
	r := rand.New(rand.NewPCG(seed, uint64(id)))
	model := map[string]string{}
	incs := make([]int, chaosCounters)
	for i := range ops {
		key := fmt.Sprintf("p%d-%d", id, r.IntN(chaosKeys))
		val := selfValue(key, r.Uint64N(1000))
		cur, present := model[key]
		var err error
		switch op := r.IntN(8); op {
		case 0, 1:
			if err = m.Set(ctx, []byte(key), val); err == nil {
				model[key] = string(val)
			}
		case 2:
			var ok bool
			if ok, err = m.Delete(ctx, []byte(key)); err == nil {
				if ok != present {
					err = fmt.Errorf("Delete(%s) = %v, model says %v", key, ok, present)
				}
				delete(model, key)
			}
		case 3:
			old := []byte(cur)
			if r.IntN(2) == 0 {
				old = append(old, 'x') // wrong
			}
			var ok bool
			if ok, err = m.CompareAndSwap(ctx, []byte(key), old, val); err == nil {
				if want := present && string(old) == cur; ok != want {
					err = fmt.Errorf("CompareAndSwap(%s) = %v, want %v", key, ok, want)
				} else if ok {
					model[key] = string(val)
				}
			}
		case 4:
			var act []byte
			var loaded bool
			if act, loaded, err = m.LoadOrStore(ctx, []byte(key), val); err == nil {
				switch {
				case loaded != present:
					err = fmt.Errorf("LoadOrStore(%s) loaded = %v, model says %v", key, loaded, present)
				case loaded && string(act) != cur:
					err = fmt.Errorf("LoadOrStore(%s) = %q, model says %q", key, act, cur)
				case !loaded:
					model[key] = string(val)
				}
			}
		case 5:
			var got []byte
			var ok bool
			if got, ok, err = m.Get([]byte(key)); err == nil && (ok != present || string(got) != cur) {
				err = fmt.Errorf("Get(%s) = %q, %v; model says %q, %v", key, got, ok, cur, present)
			}
		case 6:
			c := r.IntN(chaosCounters)
			if err = increment(ctx, m, counterKey(c)); err == nil {
				incs[c]++
			}
		case 7:
			other := fmt.Sprintf("p%d-%d", r.IntN(4), r.IntN(chaosKeys))
			var got []byte
			var ok bool
			if got, ok, err = m.Get([]byte(other)); err == nil && ok {
				err = checkValue(other, got)
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("process %d, op %d: %w", id, i, err)
		}
	}
	return model, incs, nil
}

func registerProcessHelpers() {
	// chaos NAME ID OPS SEED: say "ready", wait for a line on stdin, run
	// chaos on the named map, then print the model ("K key hexvalue"),
	// the increments ("C counter n") and "done".
	helperproc.Register("chaos", func(a []string) error {
		m, err := Open(a[0])
		if err != nil {
			return err
		}
		defer m.Close()
		id, _ := strconv.Atoi(a[1])
		ops, _ := strconv.Atoi(a[2])
		seed, _ := strconv.ParseUint(a[3], 10, 64)
		fmt.Println("ready")
		if _, err := fmt.Scanln(); err != nil {
			return err
		}
		model, incs, err := chaos(context.Background(), m, id, ops, seed)
		if err != nil {
			return err
		}
		var out strings.Builder
		for k, v := range model {
			fmt.Fprintf(&out, "K %s %x\n", k, v)
		}
		for c, n := range incs {
			fmt.Fprintf(&out, "C %d %d\n", c, n)
		}
		fmt.Print(out.String(), "done\n")
		return nil
	})
}

// TestFourProcesses runs chaos in 4 processes at once on one map, then
// checks the map against the union of their models and the counters
// against the sum of their increments.
func TestFourProcesses(t *testing.T) {
	ops := 10000
	if testing.Short() {
		ops = 500
	}
	m, name := namedMap(t, &Options{Entries: 4*chaosKeys + chaosCounters, Bytes: 64 << 10})
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	var procs []*helperproc.Proc
	var stdins []interface{ Close() error }
	for id := range 4 {
		cmd := helperproc.Command(t, "chaos", name, strconv.Itoa(id), strconv.Itoa(ops), strconv.FormatUint(seed, 10))
		helperproc.NoExitSleep(cmd)
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		p := helperproc.Start(t, cmd)
		p.Expect(t, "ready")
		procs = append(procs, p)
		stdins = append(stdins, in)
	}
	for _, in := range stdins {
		in.Close() // all start at once: Scanln returns at EOF
	}
	want := map[string]string{}
	counts := make([]uint64, chaosCounters)
	for id, p := range procs {
		for line := p.Line(t); line != "done"; line = p.Line(t) {
			f := strings.Fields(line)
			switch {
			case len(f) == 3 && f[0] == "K":
				v, err := hex.DecodeString(f[2])
				if err != nil {
					t.Fatal(err)
				}
				want[f[1]] = string(v)
			case len(f) == 3 && f[0] == "C":
				c, _ := strconv.Atoi(f[1])
				n, _ := strconv.ParseUint(f[2], 10, 64)
				counts[c] += n
			default:
				t.Fatalf("process %d: %q", id, line)
			}
		}
		if err := p.Cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v", id, err)
		}
	}
	for c, n := range counts {
		if n > 0 {
			want[counterKey(c)] = string(binary.LittleEndian.AppendUint64(nil, n))
		}
	}
	got := contents(m)
	if !maps.EqualFunc(got, want, func(a, b string) bool { return bytes.Equal([]byte(a), []byte(b)) }) {
		for k := range maps.Keys(want) {
			if got[k] != want[k] {
				t.Errorf("%q: map holds %q, models say %q", k, got[k], want[k])
			}
		}
		for k := range maps.Keys(got) {
			if _, ok := want[k]; !ok {
				t.Errorf("%q: in the map, in no model", k)
			}
		}
		t.FailNow()
	}
	checkState(t, m, want)
	if st, _ := m.Stats(); st.Deaths != 0 {
		t.Fatalf("Stats.Deaths = %d", st.Deaths)
	}
}
