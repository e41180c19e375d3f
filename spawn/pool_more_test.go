//go:build linux

package spawn_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// errOdd is registered, so that a task's error that wraps it matches it in
// the parent; errPlain is not.
var (
	errOdd   = spawn.RegisterError(errors.New("spawn_test: odd input"))
	errPlain = errors.New("spawn_test: plain")

	// Two values with one text, as two packages may define.
	errTwin1 = spawn.RegisterError(errors.New("spawn_test: twin"))
	errTwin2 = spawn.RegisterError(errors.New("spawn_test: twin"))

	twinFails = spawn.RegisterTask("pool-twin-fails", func(ctx context.Context, x int) (int, error) {
		return 0, fmt.Errorf("task: %w", errTwin2)
	})
)

// gate is set by gateInit in each worker: gated items wait for it to be
// set (by the test, in the parent).
var gate *shm.Int64

// gateWait bounds a gated item's wait: it then fails, so that a test whose
// gate never opens fails instead of hanging.
const gateWait = 10 * time.Second

var (
	gateInit = spawn.Register("pool-gate-init", func(ctx context.Context, g *shm.Int64) error {
		gate = g
		return nil
	})

	// gatedSq squares x; an x > 0 first waits for the gate.
	gatedSq = spawn.RegisterTask("pool-gated-sq", func(ctx context.Context, x int) (int, error) {
		deadline := time.Now().Add(gateWait)
		for x > 0 && gate.Load() == 0 {
			if time.Now().After(deadline) {
				return 0, errors.New("gate still closed")
			}
			time.Sleep(time.Millisecond)
		}
		return x * x, nil
	})

	// pidOf returns the worker's pid after a short nap, so that both
	// workers are busy while a call runs.
	pidOf = spawn.RegisterTask("pool-pid", func(ctx context.Context, x int) (int, error) {
		time.Sleep(5 * time.Millisecond)
		return os.Getpid(), nil
	})

	// oddFails fails odd items: 1 wrapping errOdd, 3 with a missing
	// file's error (os.ErrNotExist), 5 with errPlain, 7 panics with errOdd.
	oddFails = spawn.RegisterTask("pool-odd", func(ctx context.Context, x int) (int, error) {
		switch x {
		case 1:
			return 0, fmt.Errorf("item %d: %w", x, errOdd)
		case 3:
			_, err := os.Open("/nonexistent/spawn_test")
			return 0, err
		case 5:
			return 0, errPlain
		case 7:
			panic(errOdd)
		}
		return x, nil
	})

	childOdd = spawn.Register("child-odd", func(ctx context.Context, _ struct{}) error {
		return fmt.Errorf("in the child: %w", errOdd)
	})
)

func gatedPool(t *testing.T, g *shm.Int64) *spawn.Pool[int, int] {
	return newPool(t, gatedSq, &spawn.PoolOptions{Workers: 2, Initializer: spawn.Init(gateInit, g)})
}

// TestPoolImapChunkOne: Imap and ImapUnordered send one item at a time by
// default (Python's chunksize 1): item 0's result arrives while every
// other item still waits for the gate. With Map's automatic chunk size,
// item 0 would share a chunk with gated items and wait for them.
func TestPoolImapChunkOne(t *testing.T) {
	for _, unordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("unordered=%v", unordered), func(t *testing.T) {
			g, err := shm.NewInt64()
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			p := gatedPool(t, g)
			xs := slices.Values(ints(40))
			n := 0
			check := func(i, y int, err error) {
				if err != nil || y != i*i {
					t.Fatalf("item %d: %d, %v", i, y, err)
				}
				if n == 0 {
					if i != 0 || g.Load() != 0 {
						t.Fatalf("first result: item %d, gate %d; want item 0 before the gate opens", i, g.Load())
					}
					g.Store(1)
				}
				n++
			}
			if unordered {
				for i, r := range p.ImapUnordered(t.Context(), xs) {
					check(i, r.Value, r.Err)
				}
			} else {
				for y, err := range p.Imap(t.Context(), xs) {
					check(n, y, err)
				}
			}
			if n != 40 {
				t.Fatalf("%d results, want 40", n)
			}
			closeWait(t, p)
		})
	}
}

// TestPoolImapLazy: Imap reads its input as it goes: the input yields item
// k+1 only once the loop has received result k. An Imap that read its
// input to the end before starting would never yield.
func TestPoolImapLazy(t *testing.T) {
	p := newPool(t, sq, &spawn.PoolOptions{Workers: 2})
	const n = 20
	for _, unordered := range []bool{false, true} {
		got := make(chan int, n)
		xs := func(yield func(int) bool) {
			for k := range n {
				if !yield(k) {
					return
				}
				select {
				case <-got:
				case <-time.After(30 * time.Second):
					t.Error("the loop did not receive a result 30 s after its input yielded")
					return
				}
			}
		}
		k := 0
		if unordered {
			for i, r := range p.ImapUnordered(t.Context(), xs) {
				if i != k || r.Err != nil || r.Value != k*k {
					t.Fatalf("ImapUnordered: (%d, %+v), want item %d", i, r, k)
				}
				k++
				got <- k
			}
		} else {
			for y, err := range p.Imap(t.Context(), xs) {
				if err != nil || y != k*k {
					t.Fatalf("Imap item %d: %d, %v", k, y, err)
				}
				k++
				got <- k
			}
		}
		if k != n {
			t.Fatalf("unordered=%v: %d results, want %d", unordered, k, n)
		}
	}
	closeWait(t, p)
}

// TestPoolImapReadAhead: over an endless input, Imap reads only a bounded
// number of items beyond those it has yielded, and, once its loop has
// ended, at most the one it was reading: the input's next yield returns
// false.
func TestPoolImapReadAhead(t *testing.T) {
	p := newPool(t, sq, &spawn.PoolOptions{Workers: 2})
	var read atomic.Int64
	returned := make(chan struct{}, 1)
	endless := func(yield func(int) bool) {
		defer func() { returned <- struct{}{} }()
		for k := 0; ; k++ {
			read.Add(1)
			if !yield(k) {
				return
			}
		}
	}
	for _, chunk := range []int{1, 3} {
		n := 0
		for y, err := range p.Chunked(chunk).Imap(t.Context(), endless) {
			if err != nil || y != n*n {
				t.Fatalf("item %d: %d, %v", n, y, err)
			}
			if n++; n == 50 {
				break
			}
		}
		// Read ahead: a few chunks per worker (2 workers, 2 chunks each
		// at a worker, 2 more): 8 chunks, and the chunk being filled.
		after := read.Load()
		if bound := int64(50 + 9*chunk); after > bound {
			t.Fatalf("chunk %d: read %d items for 50 results, want at most %d", chunk, after, bound)
		}
		select {
		case <-returned:
		case <-time.After(30 * time.Second):
			t.Fatalf("chunk %d: the input did not return 30 s after the loop ended", chunk)
		}
		if got := read.Load(); got > after+1 {
			t.Fatalf("chunk %d: read %d items after the loop ended, want at most the one in progress", chunk, got-after)
		}
		read.Store(0)
	}
	closeWait(t, p)
}

// TestPoolImapInputBlocked: an input blocked inside a read does not hold
// the loop: breaking out of it, or cancelling its ctx while it waits for
// an item the input has not yielded, returns at once. The goroutine
// reading the input ends once the input is released, without reading
// further (its next yield returns false).
func TestPoolImapInputBlocked(t *testing.T) {
	p := newPool(t, sq, &spawn.PoolOptions{Workers: 2})
	for _, how := range []string{"break", "cancel", "break-unordered", "cancel-unordered"} {
		t.Run(how, func(t *testing.T) {
			release, returned := make(chan struct{}), make(chan int, 1)
			// The input yields 2 items, then blocks until released;
			// it counts the items it yields after the release.
			xs := func(yield func(int) bool) {
				late := 0
				defer func() { returned <- late }()
				for k := range 2 {
					if !yield(k) {
						return
					}
				}
				<-release
				for k := 2; k < 10; k++ {
					late++
					if !yield(k) {
						return
					}
				}
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			cancelling := strings.HasPrefix(how, "cancel")
			ended := make(chan error, 1)
			go func() {
				// Two results, then break, or wait for a third that
				// the blocked input never yields until ctx ends.
				n := 0
				var last error
				step := func(err error) bool {
					if n++; n == 2 {
						if !cancelling {
							return false
						}
						cancel()
					}
					last = err
					return true
				}
				if strings.HasSuffix(how, "unordered") {
					for _, r := range p.ImapUnordered(ctx, xs) {
						if !step(r.Err) {
							break
						}
					}
				} else {
					for _, err := range p.Imap(ctx, xs) {
						if !step(err) {
							break
						}
					}
				}
				ended <- last
			}()
			select {
			case err := <-ended:
				if cancelling && !errors.Is(err, context.Canceled) {
					t.Errorf("last error %v, want context.Canceled", err)
				}
			case <-time.After(30 * time.Second):
				close(release)
				t.Fatal("the loop did not end 30 s after its break or cancel while its input was blocked")
			}
			close(release)
			if late := <-returned; late > 1 {
				t.Fatalf("the input yielded %d items after the loop ended, want at most 1", late)
			}
		})
	}
	closeWait(t, p)
}

// TestPoolImapInputPanics: a panic in the input reaches the loop, with
// its value, and leaves the pool usable.
func TestPoolImapInputPanics(t *testing.T) {
	p := newPool(t, sq, &spawn.PoolOptions{Workers: 2})
	xs := func(yield func(int) bool) {
		for k := range 3 {
			if !yield(k) {
				return
			}
		}
		panic("input broke")
	}
	func() {
		defer func() {
			if r := recover(); r != "input broke" {
				t.Fatalf("recovered %v, want the input's panic", r)
			}
		}()
		for range p.Imap(t.Context(), xs) {
		}
		t.Fatal("the loop ended without the input's panic")
	}()
	if y, err := p.Apply(t.Context(), 3); err != nil || y != 9 {
		t.Fatalf("Apply after the panic = %d, %v", y, err)
	}
	closeWait(t, p)
}

// TestPoolChunked: Chunked(n) sends n items at a time, to Map and to
// Imap: with 2 workers, 20 items in chunks of 10 run as two runs of one
// worker each (in chunks of 1, as Imap's default, or 3, as Map's, the two
// workers would interleave).
func TestPoolChunked(t *testing.T) {
	p := newPool(t, pidOf, &spawn.PoolOptions{Workers: 2})
	runs := func(pids []int) bool {
		return !slices.ContainsFunc(pids[:10], func(x int) bool { return x != pids[0] }) &&
			!slices.ContainsFunc(pids[10:], func(x int) bool { return x != pids[10] })
	}
	pids, err := p.Chunked(10).Map(t.Context(), ints(20))
	if err != nil || !runs(pids) {
		t.Fatalf("Chunked(10).Map: %v, %v; want two runs of 10", pids, err)
	}
	pids, err = p.Chunked(10).MapAsync(t.Context(), ints(20)).Get(t.Context())
	if err != nil || !runs(pids) {
		t.Fatalf("Chunked(10).MapAsync: %v, %v; want two runs of 10", pids, err)
	}
	pids = pids[:0]
	for pid, err := range p.Chunked(10).Imap(t.Context(), slices.Values(ints(20))) {
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if !runs(pids) {
		t.Fatalf("Chunked(10).Imap: %v; want two runs of 10", pids)
	}
	pids = make([]int, 20)
	for i, r := range p.Chunked(10).ImapUnordered(t.Context(), slices.Values(ints(20))) {
		pids[i] = r.Value
	}
	if !runs(pids) {
		t.Fatalf("Chunked(10).ImapUnordered: %v; want two runs of 10", pids)
	}
	// The default for Map interleaves: each worker gets chunks of 3.
	if pids, _ := p.Map(t.Context(), ints(20)); runs(pids) {
		t.Fatalf("Map with its default chunk size ran as Chunked(10): %v", pids)
	}
	closeWait(t, p)
}

// TestPoolMapAsync: a future for a whole Map, with Map's results and
// errors.
func TestPoolMapAsync(t *testing.T) {
	p := newPool(t, work, &spawn.PoolOptions{Workers: 2})
	xs := []poolIn{{X: 1}, {X: 2, Op: "fail"}, {X: 3}}
	f := p.MapAsync(t.Context(), xs)
	select {
	case <-f.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("MapAsync not done after 30 s")
	}
	out, err := f.Get(t.Context())
	var me *spawn.MapError
	if !errors.As(err, &me) || len(me.Errs) != 1 || me.Total != 3 || len(out) != 3 || out[0].Y != 1 || out[2].Y != 9 {
		t.Fatalf("MapAsync = %+v, %v", out, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.MapAsync(ctx, xs).Get(t.Context()); !errors.Is(err, context.Canceled) {
		t.Fatalf("MapAsync with a cancelled ctx = %v", err)
	}
	closeWait(t, p)
	if _, err := p.MapAsync(t.Context(), xs).Get(t.Context()); !errors.Is(err, spawn.ErrShutdown) {
		t.Fatalf("MapAsync after Shutdown = %v", err)
	}
}

// TestPoolErrorIdentity: a task's error that matches a registered error
// matches it in the parent, through TaskError and MapError; others do not.
func TestPoolErrorIdentity(t *testing.T) {
	p := newPool(t, oddFails, &spawn.PoolOptions{Workers: 2})
	_, err := p.Map(t.Context(), ints(8))
	var me *spawn.MapError
	if !errors.As(err, &me) || len(me.Errs) != 4 {
		t.Fatalf("Map = %v, want 4 failures", err)
	}
	if !errors.Is(err, errOdd) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("MapError %v does not match errOdd and os.ErrNotExist", err)
	}
	want := []struct {
		odd, notExist, plain bool
	}{{true, false, false}, {false, true, false}, {false, false, false}, {true, false, false}}
	for k, e := range me.Errs {
		w := want[k]
		if errors.Is(e, errOdd) != w.odd || errors.Is(e, os.ErrNotExist) != w.notExist || errors.Is(e, errPlain) {
			t.Errorf("item %d's error %v: Is(errOdd) %v, Is(ErrNotExist) %v, Is(errPlain) %v",
				2*k+1, e, errors.Is(e, errOdd), errors.Is(e, os.ErrNotExist), errors.Is(e, errPlain))
		}
	}
	var te *spawn.TaskError
	if !errors.As(me.Errs[3], &te) || !te.Panic {
		t.Fatalf("item 7: %v, want a panic", me.Errs[3])
	}
	if _, err := p.Apply(t.Context(), 1); !errors.Is(err, errOdd) {
		t.Fatalf("Apply = %v, want errOdd", err)
	}
	for _, err := range p.Imap(t.Context(), slices.Values([]int{0, 1})) {
		if err != nil && !errors.Is(err, errOdd) {
			t.Fatalf("Imap error %v, want errOdd", err)
		}
	}
	closeWait(t, p)

	// A child's error too.
	err = spawn.Run(t.Context(), childOdd, struct{}{}, nil)
	var ce *spawn.ChildError
	if !errors.As(err, &ce) || !errors.Is(err, errOdd) || errors.Is(err, errPlain) {
		t.Fatalf("Run = %v, want a ChildError matching errOdd", err)
	}
}

func TestRegisterError(t *testing.T) {
	if keys := spawn.ErrorKeys(fmt.Errorf("x: %w", errOdd)); !slices.Equal(keys, []string{errOdd.Error()}) {
		t.Fatalf("ErrorKeys = %q", keys)
	}
	if got := spawn.RegisteredErrors([]string{"no such key", errOdd.Error()}); len(got) != 1 || got[0] != errOdd {
		t.Fatalf("RegisteredErrors = %v", got)
	}
	if spawn.RegisterError(errOdd) != errOdd {
		t.Fatal("registering the same value again changed it")
	}
	// Two values with one text (two packages' "not found"): one key,
	// both values, and an error matching either matches both.
	if got := spawn.RegisteredErrors([]string{errTwin1.Error()}); len(got) != 2 || got[0] != errTwin1 || got[1] != errTwin2 {
		t.Fatalf("RegisteredErrors(twins) = %v, want both values", got)
	}
	if keys := spawn.ErrorKeys(fmt.Errorf("x: %w", errTwin2)); !slices.Equal(keys, []string{errTwin1.Error()}) {
		t.Fatalf("ErrorKeys(twin) = %q, want the key once", keys)
	}
	// An error wrapping several registered errors carries every key.
	both := fmt.Errorf("%w; %w", errOdd, os.ErrNotExist)
	if keys := spawn.ErrorKeys(both); !slices.Contains(keys, errOdd.Error()) || !slices.Contains(keys, os.ErrNotExist.Error()) {
		t.Fatalf("ErrorKeys(%v) = %q", both, keys)
	}
}

// TestPoolErrorTwins: a task's error wrapping one of two registered
// values with the same text matches both in the parent (only the text
// crosses), and registering them did not panic at init.
func TestPoolErrorTwins(t *testing.T) {
	p := newPool(t, twinFails, &spawn.PoolOptions{Workers: 1})
	_, err := p.Apply(t.Context(), 0)
	if !errors.Is(err, errTwin1) || !errors.Is(err, errTwin2) || errors.Is(err, errOdd) {
		t.Fatalf("Apply = %v, want a match of both twins and not of errOdd", err)
	}
	closeWait(t, p)
}

// TestPoolBadOptions: negative counts and chunk sizes are errors.
func TestPoolBadOptions(t *testing.T) {
	for _, o := range []spawn.PoolOptions{{Workers: -1}, {ChunkSize: -2}, {MaxTasksPerWorker: -3}} {
		p, err := spawn.NewPool(t.Context(), sq, &o)
		if !errors.Is(err, os.ErrInvalid) {
			if p != nil {
				p.Close()
			}
			t.Fatalf("NewPool(%+v) = %v, want os.ErrInvalid", o, err)
		}
	}
	p := newPool(t, sq, &spawn.PoolOptions{Workers: 1})
	if _, err := p.Chunked(0).Map(t.Context(), ints(3)); !errors.Is(err, os.ErrInvalid) || !strings.Contains(err.Error(), "chunk size 0") {
		t.Fatalf("Chunked(0).Map = %v, want os.ErrInvalid", err)
	}
	for _, err := range p.Chunked(-1).Imap(t.Context(), slices.Values(ints(3))) {
		if !errors.Is(err, os.ErrInvalid) {
			t.Fatalf("Chunked(-1).Imap = %v, want os.ErrInvalid", err)
		}
	}
	closeWait(t, p)
}

// chanItem cannot cross: gob would drop Reply silently.
type chanItem struct {
	X     int
	Reply chan int
}

var chanItemTask = spawn.RegisterTask("pool-chan-item", func(ctx context.Context, x chanItem) (int, error) { return x.X, nil })

func TestPoolRefusesChanField(t *testing.T) {
	p, err := spawn.NewPool(t.Context(), chanItemTask, nil)
	if !errors.Is(err, spawn.ErrType) || !strings.Contains(err.Error(), "field spawn_test.chanItem.Reply") || !strings.Contains(err.Error(), "channel") {
		if p != nil {
			p.Close()
		}
		t.Fatalf("NewPool with a chan field = %v, want ErrType naming the field", err)
	}
}

// TestPoolShutdownDuringImap: Shutdown while an Imap still reads its input
// lets the Imap finish (its later items still run), as the work submitted
// before Shutdown does; then the workers exit.
func TestPoolShutdownDuringImap(t *testing.T) {
	p := newPool(t, sq, &spawn.PoolOptions{Workers: 2})
	more := make(chan struct{})
	xs := func(yield func(int) bool) {
		if !yield(0) {
			return
		}
		<-more
		for k := 1; k < 5; k++ {
			if !yield(k) {
				return
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	n := 0
	for y, err := range p.Imap(ctx, xs) {
		if err != nil || y != n*n {
			t.Fatalf("item %d: %d, %v", n, y, err)
		}
		if n == 0 {
			go func() { shut <- p.Shutdown(t.Context()) }()
			// Wait for the pool to be shutting down: new calls refused.
			for {
				if _, err := p.Go(t.Context(), 1).Get(t.Context()); errors.Is(err, spawn.ErrShutdown) {
					break
				}
			}
			// The pool must keep its workers while the input may bring
			// more: give them a moment to (wrongly) exit, which a pool
			// that counted only the items read so far would let them do,
			// and then stop for good.
			for deadline := time.Now().Add(2 * time.Second); len(p.Pids()) > 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			close(more)
		}
		n++
	}
	if n != 5 {
		t.Fatalf("%d results, want 5", n)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	noChildren(t)
}

// TestPoolMapAsyncCancelled: cancelling MapAsync's ctx while its items
// run (held at the gate) fails its Future with ctx's error at once and
// leaves the pool usable; Chunked calls on a shut down pool fail with
// ErrShutdown.
func TestPoolMapAsyncCancelled(t *testing.T) {
	g, err := shm.NewInt64()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	p := gatedPool(t, g)
	ctx, cancel := context.WithCancel(t.Context())
	f := p.MapAsync(ctx, ints(10))
	select {
	case <-f.Done():
		t.Fatal("MapAsync done while its items wait for the gate")
	default:
	}
	cancel()
	get, stop := context.WithTimeout(t.Context(), 30*time.Second)
	defer stop()
	if out, err := f.Get(get); out != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Get after cancel = %v, %v; want nil, context.Canceled", out, err)
	}
	g.Store(1)
	if y, err := p.Apply(t.Context(), 3); err != nil || y != 9 {
		t.Fatalf("Apply after the cancel = %d, %v", y, err)
	}
	closeWait(t, p)
	if _, err := p.Chunked(2).Map(t.Context(), ints(3)); !errors.Is(err, spawn.ErrShutdown) {
		t.Fatalf("Chunked.Map on a shut down pool = %v", err)
	}
	if _, err := p.Chunked(2).MapAsync(t.Context(), ints(3)).Get(t.Context()); !errors.Is(err, spawn.ErrShutdown) {
		t.Fatalf("Chunked.MapAsync on a shut down pool = %v", err)
	}
	for _, err := range p.Chunked(2).Imap(t.Context(), slices.Values(ints(3))) {
		if !errors.Is(err, spawn.ErrShutdown) {
			t.Fatalf("Chunked.Imap on a shut down pool = %v", err)
		}
	}
}
