//go:build linux

package ipcqueue

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// command is helperproc.Command without the race runtime's one-second
// sleep at a successful exit (helperproc.NoExitSleep).
func command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := helperproc.Command(t, name, args...)
	helperproc.NoExitSleep(cmd)
	return cmd
}

func namedQueue(t testing.TB, size int, opts *Options) *Queue {
	t.Helper()
	name := helperproc.Name(t)
	q, err := Create(name, size, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(); Remove(name) })
	return q
}

// TestProcessMPMC: 4 producer processes, 2 consumer processes, 1,000,000
// messages: each delivered exactly once, in order per producer, untorn.
func TestProcessMPMC(t *testing.T) {
	const producers, consumers, per = 4, 2, 250000
	q := namedQueue(t, 64<<10, nil)
	name := q.Segment().Name()
	spin := strconv.Itoa(int(20 * time.Microsecond))
	var outs []*bytes.Buffer
	var cons []*exec.Cmd
	for range consumers {
		cmd := command(t, "consume", name, strconv.Itoa(producers), strconv.Itoa(per), spin)
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, &out)
		cons = append(cons, cmd)
	}
	var prods []*exec.Cmd
	for p := range producers {
		cmd := command(t, "produce", name, strconv.Itoa(p), strconv.Itoa(per), spin)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		prods = append(prods, cmd)
	}
	for _, cmd := range prods {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("producer: %v", err)
		}
	}
	q.Shutdown()
	all := newChecker(producers, per)
	for i, cmd := range cons {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("consumer: %v", err)
		}
		c := newChecker(producers, per)
		for _, s := range c.seen {
			if err := binary.Read(outs[i], binary.LittleEndian, s); err != nil {
				t.Fatal(err)
			}
		}
		if err := all.merge(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := all.complete(per); err != nil {
		t.Fatal(err)
	}
	st := q.Stats()
	if st.Puts != producers*per || st.Gets != st.Puts || st.Dropped != 0 || q.Len() != 0 {
		t.Fatalf("stats %+v, Len %d", st, q.Len())
	}
	t.Logf("stats %+v", st)
}

// TestProducerCrash kills a producer between writing its record and
// committing it, holding the producer lock: a consumer then waiting on the
// empty queue follows the dead holder and repairs what it left by itself
// (its Watch: the record dropped whole and counted, the lock released),
// consumers never see the record, and the queue goes on. Nothing else
// looks at the lock until that repair is seen (no Stats, which would repair
// in the waiter's stead, and no Put): without it the waiter sleeps on, and
// the test fails after hangAfter.
func TestProducerCrash(t *testing.T) {
	q := namedQueue(t, 4096, nil)
	cmd := command(t, "crashput", q.Segment().Name())
	if err := cmd.Run(); err == nil || cmd.ProcessState.Sys().(interface{ Signaled() bool }).Signaled() == false {
		t.Fatalf("crashput: %v", err)
	}
	ctx := t.Context()
	if got, err := q.Get(ctx); err != nil || string(got) != "before" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	done := make(chan error, 1)
	go func() {
		got, err := q.Get(ctx)
		if err == nil && string(got) != "after" {
			err = fmt.Errorf("Get after crash = %q", got)
		}
		done <- err
	}()
	plock := u64At(q.ctl, offPLock)
	waitFor(t, "repair by the waiting consumer of the dead producer's record", func() bool {
		return q.dropped.Load() == 1 && plock.Load() == 0
	})
	if st := q.Stats(); st.Dropped != 1 || st.Puts != 1 {
		t.Fatalf("stats after crash: %+v", st)
	}
	if err := q.Put(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := woken(t, done, "the waiting consumer, after a Put"); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Dropped != 1 || st.Puts != 2 || st.Gets != 2 {
		t.Fatalf("final stats: %+v", st)
	}
}

// TestProducerCrashStats: with nobody waiting, Stats alone notices.
func TestProducerCrashStats(t *testing.T) {
	q := namedQueue(t, 4096, nil)
	cmd := command(t, "crashput", q.Segment().Name())
	cmd.Run()
	if st := q.Stats(); st.Dropped != 1 || st.Puts != 1 {
		t.Fatalf("stats after crash: %+v", st)
	}
	if ok, err := q.TryPut([]byte("x")); !ok || err != nil {
		t.Fatalf("TryPut after crash: %v %v", ok, err)
	}
}

// TestConsumerCrash kills a consumer inside Get after it copied the
// message but before it took it: the message stays for the next consumer,
// which takes the dead consumer's lock over at its first look, not at a
// slow check (no sleep runs into one: robust.Unwoken), and gets it.
func TestConsumerCrash(t *testing.T) {
	q := namedQueue(t, 4096, nil)
	ctx := t.Context()
	q.Put(ctx, []byte("one"))
	q.Put(ctx, []byte("two"))
	cmd := command(t, "crashget", q.Segment().Name())
	cmd.Run()
	before := robust.Unwoken()
	got, err := q.Get(ctx)
	if err != nil || string(got) != "one" {
		t.Fatalf("Get after consumer crash = %q, %v", got, err)
	}
	if n := robust.Unwoken() - before; n != 0 {
		t.Fatalf("the lock was taken over at a slow check (%d), not at once", n)
	}
	if got, err := q.Get(ctx); err != nil || string(got) != "two" {
		t.Fatalf("second Get = %q, %v", got, err)
	}
	if st := q.Stats(); st.ConsumerDeaths != 1 || st.Gets != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestHandle passes typed queues to a child as gob handles.
func TestHandle(t *testing.T) {
	q := namedQueue(t, 4096, nil)
	p, _ := NewTyped[point](q)
	q2 := namedQueue(t, 4096, nil)
	r, _ := NewTyped[record](q2)
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(struct {
		P *Typed[point]
		R *Typed[record]
	}{p, r}); err != nil {
		t.Fatal(err)
	}
	cmd := command(t, "typedput", hex.EncodeToString(buf.Bytes()))
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v", err)
	}
	if got, err := p.Get(t.Context()); err != nil || got != (point{X: 1, Y: -2, Tag: [4]byte{'a'}}) {
		t.Fatalf("point from child: %v, %v", got, err)
	}
	if got, err := r.Get(t.Context()); err != nil || got.Name != "child" || len(got.Vals) != 3 {
		t.Fatalf("record from child: %v, %v", got, err)
	}
	// A heap queue cannot travel.
	h := heapQueue(t, 1024, nil)
	if _, err := h.GobEncode(); !errors.Is(err, shm.ErrHeap) {
		t.Fatalf("GobEncode of a heap queue = %v", err)
	}
}

// startWaiter starts helper (waitget or waitput) on q with spin budget
// spin, and returns once the child has said "ready" and is asleep on the
// futex: its sleep is counted in Stats.Waits and its sleeper bit is set.
// (The count and the bit come just before the futex call; a wake that
// lands before the call finds the futex word changed and does not sleep.)
func startWaiter(t *testing.T, q *Queue, helper string, spin time.Duration) *helperproc.Proc {
	t.Helper()
	cmd := command(t, helper, q.Segment().Name(), spinArg(spin))
	waits := q.waits.Load()
	w := helperproc.Start(t, cmd)
	w.Expect(t, "ready")
	fx := q.dataFx
	if helper == "waitput" {
		fx = q.spaceFx
	}
	asleep(t, q, waits, fx)
	return w
}

// TestShutdownWakesProcess: Shutdown wakes a consumer blocked in Get and a
// producer blocked in Put in other processes, spinning or not; a Get or
// Put that starts after Shutdown returns at once, without sleeping. The
// consumer waits twice: with nothing to watch (the producer lock free), so
// that without the wake-up it would sleep for ever (hangAfter catches
// that), and watched, following this process, which held the producer lock
// when it fell asleep, so that without the wake-up its sleep would end at
// its slow check: there the waiter must count no such sleep
// (robust.Unwoken, see untilWoken). The producer has nothing to watch.
func TestShutdownWakesProcess(t *testing.T) {
	for _, spin := range []time.Duration{-1, 0} {
		for _, c := range []struct {
			helper, said string
			watched      bool
		}{{"waitget", "eof", false}, {"waitget", "eof", true}, {"waitput", "shutdown", false}} {
			name := fmt.Sprintf("%s/spin=%v", c.helper, spin)
			if c.watched {
				name += "/watched"
			}
			t.Run(name, func(t *testing.T) {
				untilWoken(t, func(t *testing.T) uint64 {
					return shutdownWakes(t, spin, c.helper, c.said, c.watched)
				})
			})
		}
	}
}

// shutdownWakes is a scene of TestShutdownWakesProcess: helper, asleep
// (watching this process if watched), must say said once the queue is
// shut down. It returns how many of the helper's sleeps ran into their
// slow check.
func shutdownWakes(t *testing.T, spin time.Duration, helper, said string, watched bool) uint64 {
	q := spinning(namedQueue(t, 4096, nil), spin)
	if watched {
		if err := q.plock.Lock(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	w := startWaiter(t, q, helper, spin)
	if watched {
		if err := q.plock.Unlock(); err != nil { // for Shutdown, which takes it
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := q.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if s := woken(t, w.Lines, helper+", after Shutdown"); s != said {
		t.Fatalf("%s said %q, want %q", helper, s, said)
	}
	t.Logf("waiter woke after %v", time.Since(start))
	var unwoken uint64
	s := w.Line(t)
	if _, err := fmt.Sscanf(s, "unwoken %d", &unwoken); err != nil {
		t.Fatalf("%s said %q, want its unwoken count: %v", helper, s, err)
	}
	if err := w.Cmd.Wait(); err != nil {
		t.Fatalf("waiter: %v", err)
	}
	// After Shutdown: no waiting at all.
	waits := q.Stats().Waits
	if helper == "waitget" {
		for {
			_, err := q.Get(t.Context())
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	} else if err := q.Put(t.Context(), []byte("y")); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Put after Shutdown = %v", err)
	}
	if st := q.Stats(); st.Waits != waits {
		t.Fatalf("a call after Shutdown slept: %+v", st)
	}
	return unwoken
}

// TestWaitingConsumerKilled: a consumer killed while it waits in Get (so
// holding the consumer lock) costs the others at most a lock take-over, at
// the first look, not at a slow check (robust.Unwoken).
func TestWaitingConsumerKilled(t *testing.T) {
	q := namedQueue(t, 4096, nil)
	w := startWaiter(t, q, "waitget", 0)
	w.Kill()
	ctx := t.Context()
	q.Put(ctx, []byte("x"))
	before := robust.Unwoken()
	if got, err := q.Get(ctx); err != nil || string(got) != "x" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if n := robust.Unwoken() - before; n != 0 {
		t.Fatalf("the lock was taken over at a slow check (%d), not at once", n)
	}
	if st := q.Stats(); st.ConsumerDeaths != 1 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}
