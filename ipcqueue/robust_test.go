//go:build linux

package ipcqueue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/lateness"
)

// Tests of the queue on the robust core (internal/robust): deadlines kept
// and checked against dead holders, idle cost, liveness across PID
// namespaces, and producers and consumers SIGKILLed at random.

func init() {
	// stallput NAME: Put, and stop inside it holding the producer lock
	// (after writing the payload, before the commit); say "stalled", and
	// stay there until killed: a live producer lock holder.
	helperproc.Register("stallput", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		q.faults.putCopied = func() {
			fmt.Println("stalled")
			time.Sleep(time.Hour)
		}
		q.Put(context.Background(), []byte("stalled"))
		return errors.New("Put returned")
	})
	// idle: say "ready" and sleep: what an idle Go process costs.
	helperproc.Register("idle", func(a []string) error {
		fmt.Println("ready")
		time.Sleep(time.Hour)
		return nil
	})
	// chaosput NAME ID FAULT: say "ready", then put messages of producer
	// ID, numbered from 0, for ever, writing each number to stdout once
	// its Put has returned (one write each, so that a SIGKILL loses none
	// that was acknowledged). With FAULT >= 0, SIGKILL itself inside Put
	// number FAULT, holding the producer lock, between writing and
	// committing.
	helperproc.Register("chaosput", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		id, fault := atoi(a[1]), atoi(a[2])
		fmt.Println("ready")
		buf := make([]byte, 128)
		line := make([]byte, 0, 24)
		for s := uint64(0); ; s++ {
			if int(s) == fault {
				q.faults.putCopied = killSelf
			}
			if err := q.Put(context.Background(), makeMsg(buf, id, s)); err != nil {
				return err
			}
			line = strconv.AppendUint(line[:0], s, 10)
			if _, err := os.Stdout.Write(append(line, '\n')); err != nil {
				return err
			}
		}
	})
	// chaosget NAME FAULT: say "ready", then get messages until EOF,
	// checking each (a torn one is an error), writing "producer seq" for
	// each to stdout, one write each. With FAULT >= 0, SIGKILL itself
	// inside Get number FAULT, holding the consumer lock, between copying
	// the message and taking it.
	helperproc.Register("chaosget", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		defer q.Close()
		fault := atoi(a[1])
		fmt.Println("ready")
		buf := make([]byte, 128)
		line := make([]byte, 0, 48)
		for i := 0; ; i++ {
			if i == fault {
				q.faults.getCopied = killSelf
			}
			n, err := q.GetInto(context.Background(), buf)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			p, seq, err := parseMsg(buf[:n])
			if err != nil {
				return err
			}
			line = strconv.AppendInt(line[:0], int64(p), 10)
			line = append(line, ' ')
			line = strconv.AppendUint(line, seq, 10)
			if _, err := os.Stdout.Write(append(line, '\n')); err != nil {
				return err
			}
		}
	})
}

// crashedProducer returns a named queue whose producer lock is held by a
// process SIGKILLed inside Put (crashput), with that process's first
// message "before" in the queue.
func crashedProducer(t *testing.T) *Queue {
	t.Helper()
	q := namedQueue(t, 4096, nil)
	cmd := command(t, "crashput", q.Segment().Name())
	if err := cmd.Run(); err == nil {
		t.Fatal("crashput survived")
	}
	return q
}

// waitingConsumerKilled returns a named queue whose consumer lock is held
// by a process SIGKILLed while it waited in Get on the empty queue.
func waitingConsumerKilled(t *testing.T) *Queue {
	t.Helper()
	q := namedQueue(t, 4096, nil)
	w := startWaiter(t, q, "waitget", 0)
	w.Kill()
	return q
}

// TestShortDeadlineDeadHolder: a call with a 10 ms deadline, far shorter
// than any periodic check, on a queue whose producer or consumer lock is
// held by a process SIGKILLed inside Put or Get, checks the holder before
// it gives up: the lock is taken over and repaired, and the call does its
// work (or, with nothing to do, times out with the repair done).
func TestShortDeadlineDeadHolder(t *testing.T) {
	const short = 10 * time.Millisecond
	shortCtx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), short)
		t.Cleanup(cancel)
		return ctx
	}
	t.Run("producer/Put", func(t *testing.T) {
		q := crashedProducer(t)
		if err := q.Put(shortCtx(t), []byte("after")); err != nil {
			t.Fatalf("Put with a %v deadline over a dead producer = %v", short, err)
		}
		if st := q.Stats(); st.Dropped != 1 || st.Puts != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("producer/TryPut", func(t *testing.T) {
		q := crashedProducer(t)
		if ok, err := q.TryPut([]byte("after")); !ok || err != nil {
			t.Fatalf("TryPut over a dead producer = %v, %v", ok, err)
		}
		if q.dropped.Load() != 1 {
			t.Fatalf("stats %+v", q.Stats())
		}
	})
	t.Run("producer/Get", func(t *testing.T) {
		q := crashedProducer(t)
		if m, err := q.Get(t.Context()); err != nil || string(m) != "before" {
			t.Fatalf("Get = %q, %v", m, err)
		}
		// Nothing to get: the Get times out, but not before it repaired
		// the dead producer's lock (read without Stats, which would).
		if m, err := q.Get(shortCtx(t)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get on the empty queue = %q, %v", m, err)
		}
		if d, w := q.dropped.Load(), u64At(q.ctl, offPLock).Load(); d != 1 || w != 0 {
			t.Fatalf("after a Get that gave up: %d dropped, producer lock word %#x", d, w)
		}
	})
	t.Run("consumer/Get", func(t *testing.T) {
		q := waitingConsumerKilled(t)
		if err := q.Put(t.Context(), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if m, err := q.Get(shortCtx(t)); err != nil || string(m) != "x" {
			t.Fatalf("Get with a %v deadline over a dead consumer = %q, %v", short, m, err)
		}
		if st := q.Stats(); st.ConsumerDeaths != 1 || st.Gets != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("consumer/Get-empty", func(t *testing.T) {
		q := waitingConsumerKilled(t)
		if m, err := q.Get(shortCtx(t)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get on the empty queue = %q, %v", m, err)
		}
		if st := q.Stats(); st.ConsumerDeaths != 1 {
			t.Fatalf("stats %+v", st)
		}
		if w := u64At(q.ctl, offCLock).Load(); w != 0 {
			t.Fatalf("consumer lock left held: %#x", w)
		}
	})
	t.Run("consumer/TryGet", func(t *testing.T) {
		q := waitingConsumerKilled(t)
		if err := q.Put(t.Context(), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if m, ok, err := q.TryGet(); !ok || err != nil || string(m) != "x" {
			t.Fatalf("TryGet over a dead consumer = %q, %v, %v", m, ok, err)
		}
		if st := q.Stats(); st.ConsumerDeaths != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestDeadlineLateness: a wait returns within about a millisecond of its
// ctx's deadline (issue 14; see lateness.Check for what is asserted
// against a loaded machine's scheduler): a Get on an empty queue, a Put on
// a full one, a Get while a live producer in another process holds the
// producer lock (the waiter follows it, and looks at it once more at the
// deadline), and a Get waiting for the consumer lock, which a consumer in
// another process holds while it waits for data.
func TestDeadlineLateness(t *testing.T) {
	rounds := 300
	if testing.Short() {
		rounds = 60
	}
	report := func(t *testing.T, wait func(ctx context.Context) error) {
		t.Helper()
		lateness.Check(t, rounds, wait, context.DeadlineExceeded)
	}
	get := func(q *Queue) func(ctx context.Context) error {
		return func(ctx context.Context) error { _, err := q.Get(ctx); return err }
	}
	t.Run("get-empty", func(t *testing.T) {
		report(t, get(heapQueue(t, 4096, nil)))
	})
	t.Run("put-full", func(t *testing.T) {
		q := heapQueue(t, 256, nil)
		for {
			if ok, err := q.TryPut(make([]byte, 56)); err != nil || !ok {
				break
			}
		}
		report(t, func(ctx context.Context) error { return q.Put(ctx, make([]byte, 56)) })
	})
	t.Run("get-producer-lock-held", func(t *testing.T) {
		q := namedQueue(t, 4096, nil)
		h := helperproc.Start(t, command(t, "stallput", q.Segment().Name()))
		defer h.Kill()
		h.Expect(t, "stalled")
		report(t, get(q))
	})
	t.Run("get-consumer-lock-held", func(t *testing.T) {
		q := namedQueue(t, 4096, nil)
		w := startWaiter(t, q, "waitget", 0)
		defer w.Kill()
		report(t, get(q))
	})
}

// procCPU returns the CPU time process pid has used: from /proc/PID/stat
// (utime + stime, in clock ticks of 10 ms), and, with nanosecond
// resolution, the sum of its threads' run times (/proc/PID/task/*/schedstat).
func procCPU(t *testing.T, pid int) (ticks time.Duration, run time.Duration) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	ticks = time.Duration(ut+st) * 10 * time.Millisecond
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, task.Name()))
		if err != nil {
			continue // the thread exited
		}
		ns, _ := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
		run += time.Duration(ns)
	}
	return ticks, run
}

// TestIdleGet: children blocked in Get on an empty queue cost next to no
// CPU (issue 14's target: at most 5 ms per 5 s; 10 ms before the robust
// core, which slept in 100 ms slices): one holds the consumer lock and
// waits for data (no timeout at all), another waits for the consumer lock
// (it follows the holder, another process, through the kernel, with a
// slow back-off check: robust, "Watching holders"). It measures the
// children from outside over 2 s (IPCKIT_IDLE_SECONDS sets another
// length), after half a second to settle, beside an idle Go process
// measured the same way (the baseline), and asserts at most 1 ms per
// second above it. It logs the figures per 5 s, from the threads'
// schedstat (nanoseconds) and from /proc/PID/stat (utime + stime, in
// ticks of 10 ms).
func TestIdleGet(t *testing.T) {
	secs := 2.0
	if s := os.Getenv("IPCKIT_IDLE_SECONDS"); s != "" {
		fmt.Sscan(s, &secs)
	}
	d := time.Duration(secs * float64(time.Second))
	per5s := func(x time.Duration) time.Duration { return time.Duration(float64(x) * 5 / secs) }
	q := namedQueue(t, 4096, nil)
	var pids [3]int
	for i := range 2 {
		w := startWaiter(t, q, "waitget", 0)
		defer w.Kill()
		pids[i] = w.Cmd.Process.Pid
	}
	idle := helperproc.Start(t, command(t, "idle"))
	defer idle.Kill()
	idle.Expect(t, "ready")
	pids[2] = idle.Cmd.Process.Pid
	time.Sleep(500 * time.Millisecond)
	var ticks, run [3]time.Duration
	for i, pid := range pids {
		ticks[i], run[i] = procCPU(t, pid)
	}
	time.Sleep(d)
	for i, pid := range pids {
		t1, r1 := procCPU(t, pid)
		ticks[i], run[i] = t1-ticks[i], r1-run[i]
	}
	t.Logf("over %v, per 5 s: waiting for data %v (stat: %v), waiting for the consumer lock %v (stat: %v), an idle Go process %v (stat: %v)",
		d, per5s(run[0]), per5s(ticks[0]), per5s(run[1]), per5s(ticks[1]), per5s(run[2]), per5s(ticks[2]))
	if raceEnabled {
		t.Log("not asserted under -race: its runtime wakes up on its own")
		return
	}
	for i, what := range []string{"waiting for data", "waiting for the consumer lock"} {
		if rate := time.Duration(float64(run[i]-run[2]) / secs); rate > time.Millisecond {
			t.Errorf("a consumer blocked in Get, %s, used %v of CPU per second above an idle process", what, rate)
		}
	}
}

// consumed is what the consume helper reports: a checker's bitmaps.
func consumed(t *testing.T, out *bytes.Buffer, producers, per int) *checker {
	t.Helper()
	c := newChecker(producers, per)
	for _, s := range c.seen {
		if err := binary.Read(out, binary.LittleEndian, s); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestPIDNamespaceConsumers reproduces issue 14: two consumers of one named
// queue, one in a PID namespace of its own (a container sharing /dev/shm
// but not pids), one beside the test, each waiting for data while holding
// the consumer lock and for the lock while the other holds it, sometimes
// for 150 ms. Before the robust core, each took the other for dead once it
// looked (the holder's pid meant nothing, or another process, in the other
// namespace): 1,002 messages delivered for 1,000, and 3 consumer deaths
// counted. Now: each message exactly once, no death.
func TestPIDNamespaceConsumers(t *testing.T) {
	const n = 1000
	q := namedQueue(t, 4096, nil)
	name := q.Segment().Name()
	var outs [2]bytes.Buffer
	var cmds [2]*exec.Cmd
	for i := range cmds {
		cmd := command(t, "consume", name, "1", strconv.Itoa(n), "0")
		if i == 0 {
			helperproc.InPIDNamespace(t, cmd)
		}
		cmd.Stdout = &outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	// Both consumers are asleep (one on the data, one on the lock) before
	// the first message, and often between messages.
	deadline := time.Now().Add(time.Minute)
	for q.clock.Sleepers().Load()&1 == 0 || q.dataFx.Load()&1 == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the consumers never went to sleep")
		}
		time.Sleep(time.Millisecond)
	}
	buf := make([]byte, 128)
	for s := range n {
		if err := q.Put(t.Context(), makeMsg(buf, 0, uint64(s))); err != nil {
			t.Fatal(err)
		}
		switch {
		case s%100 == 99:
			// Long enough for the consumer waiting for the lock to look
			// at its holder, however it waits.
			time.Sleep(3 * time.Second / 20)
		case s%10 == 0:
			time.Sleep(time.Duration(rand.N(2000)) * time.Microsecond)
		}
	}
	if err := q.Shutdown(); err != nil {
		t.Fatal(err)
	}
	all := newChecker(1, n)
	got := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("consumer %d: %v", i, err)
		}
		c := consumed(t, &outs[i], 1, n)
		for _, w := range c.seen[0] {
			for ; w != 0; w &= w - 1 {
				got++
			}
		}
		if err := all.merge(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := all.complete(n); err != nil {
		t.Fatal(err)
	}
	st := q.Stats()
	t.Logf("%d messages delivered for %d put; stats %+v", got, n, st)
	if got != n || st.Gets != n || st.ConsumerDeaths != 0 {
		t.Fatalf("%d messages delivered for %d put; stats %+v", got, n, st)
	}
}

// TestChaos kills producer and consumer processes, hundreds of times,
// while they stream messages through a small named queue (so that they
// also wait, full and empty, on the locks and the data), each dead one
// replaced at once (and at work before the next kill): the test SIGKILLs
// one at random moments, and about one process in three kills itself at
// the worst point, inside Put between writing its record and committing
// it, or inside Get between copying a message and taking it, holding the
// lock. Then it checks what
// the queue promises: no message torn (each consumer checks every message
// it gets), none delivered twice, each consumer sees each producer's
// messages in order, and every message whose Put returned (the producer
// wrote its number after Put) is delivered, save at most one per consumer
// killed (the message a consumer had taken when it died, as if it died
// just after Get returned). The queue's counters agree: every producer
// that died inside Put, and at most the others, is counted in Dropped;
// every consumer that died inside Get, and at most the others, in
// ConsumerDeaths.
func TestChaos(t *testing.T) {
	deaths := 300
	switch {
	case testing.Short():
		deaths = 60
	case raceEnabled:
		deaths = 150 // each start of a -race helper takes longer
	}
	const producers, consumers = 3, 2
	q := namedQueue(t, 1024, nil)
	name := q.Segment().Name()

	type proc struct {
		h        *helperproc.Proc
		consumer bool
		id       int  // a producer's id: a new one for each process
		fault    bool // it kills itself inside Put or Get
		lines    []string
		ready    chan struct{} // closed once it is at work
		done     chan struct{} // closed once its output ended
	}
	var ended []*proc
	nextID := 0
	start := func(consumer, mayFault bool) *proc {
		p := &proc{consumer: consumer, ready: make(chan struct{}), done: make(chan struct{})}
		fault := -1
		if mayFault && rand.N(3) == 0 {
			p.fault, fault = true, rand.N(100)
		}
		var cmd *exec.Cmd
		if consumer {
			cmd = command(t, "chaosget", name, strconv.Itoa(fault))
		} else {
			p.id = nextID
			nextID++
			cmd = command(t, "chaosput", name, strconv.Itoa(p.id), strconv.Itoa(fault))
		}
		p.h = helperproc.Start(t, cmd)
		go func() {
			defer close(p.done)
			if s, ok := <-p.h.Lines; !ok || s != "ready" {
				return
			}
			close(p.ready)
			for s := range p.h.Lines {
				p.lines = append(p.lines, s)
			}
		}()
		return p
	}
	// finish kills p if kill, and reaps it; it fails the test unless p died
	// by SIGKILL (or exited cleanly, with clean).
	finish := func(p *proc, kill, clean bool) {
		if kill {
			p.h.Cmd.Process.Kill()
		}
		<-p.done // all its output, before Wait closes the pipe
		ended = append(ended, p)
		err := p.h.Cmd.Wait()
		if clean && err == nil {
			return
		}
		if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || !ee.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
			t.Fatalf("helper %v: %v", p.h.Cmd.Args, err)
		}
	}
	var live []*proc
	for range producers {
		live = append(live, start(false, true))
	}
	for range consumers {
		live = append(live, start(true, true))
	}
	var killedP, killedC, faultP, faultC int
	died := func(p *proc) {
		switch {
		case p.consumer && p.fault:
			faultC++
		case p.consumer:
			killedC++
		case p.fault:
			faultP++
		default:
			killedP++
		}
	}
	// kill kills p, unless it already died inside Put or Get, and reaps
	// it; a process that dies by this kill counts as killed.
	kill := func(p *proc) {
		select {
		case <-p.done:
		default:
			p.fault = false
		}
		finish(p, true, false)
		died(p)
	}
	for killedP+killedC+faultP+faultC < deaths {
		time.Sleep(time.Duration(rand.N(10000)) * time.Microsecond)
		// Replace the processes that killed themselves, then kill one.
		for i, p := range live {
			select {
			case <-p.done:
				if !p.fault {
					t.Fatalf("helper %v exited on its own", p.h.Cmd.Args)
				}
				finish(p, false, false)
				died(p)
				live[i] = start(p.consumer, true)
			default:
			}
		}
		// Kills land in processes at work, not in their start-up (which
		// takes longer than the pause between kills under -race).
		i := rand.N(len(live))
		select {
		case <-live[i].ready:
			kill(live[i])
			live[i] = start(live[i].consumer, true)
		default:
		}
	}
	// The producers go; fresh consumers, which do not kill themselves,
	// drain the queue and see EOF.
	for i, p := range live {
		kill(p)
		if p.consumer {
			live[i] = start(true, false)
		}
	}
	if err := q.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, p := range live {
		if p.consumer {
			finish(p, false, true)
		}
	}

	// Acknowledged messages, per producer: 0 to acked[id]-1.
	acked := make([]uint64, nextID)
	for _, p := range ended {
		if !p.consumer {
			acked[p.id] = uint64(len(p.lines))
			for i, s := range p.lines {
				if s != strconv.Itoa(i) {
					t.Fatalf("producer %d wrote %q as its acknowledgment %d", p.id, s, i)
				}
			}
		}
	}
	seen := map[[2]uint64]bool{}
	delivered := 0
	for _, p := range ended {
		if !p.consumer {
			continue
		}
		last := map[uint64]uint64{}
		for _, s := range p.lines {
			var id, seq uint64
			if _, err := fmt.Sscanf(s, "%d %d", &id, &seq); err != nil || id >= uint64(nextID) {
				t.Fatalf("a consumer wrote %q", s)
			}
			k := [2]uint64{id, seq}
			if seen[k] {
				t.Fatalf("producer %d's message %d delivered twice", id, seq)
			}
			seen[k] = true
			if l, ok := last[id]; ok && seq <= l {
				t.Fatalf("a consumer got producer %d's message %d after %d", id, seq, l)
			}
			last[id] = seq
			delivered++
		}
	}
	lost := 0
	for id, n := range acked {
		for s := range n {
			if !seen[[2]uint64{uint64(id), s}] {
				lost++
			}
		}
	}
	st := q.Stats()
	t.Logf("%d deaths: producers %d killed, %d inside Put; consumers %d killed, %d inside Get; "+
		"%d messages delivered, %d acknowledged ones not; stats %+v",
		killedP+killedC+faultP+faultC, killedP, faultP, killedC, faultC, delivered, lost, st)
	if lost > killedC {
		t.Errorf("%d acknowledged messages not delivered, with only %d consumers killed", lost, killedC)
	}
	if st.Dropped < uint64(faultP) || st.Dropped > uint64(killedP+faultP) {
		t.Errorf("Dropped %d after %d producers died inside Put and %d were killed", st.Dropped, faultP, killedP)
	}
	if st.ConsumerDeaths < uint64(faultC) || st.ConsumerDeaths > uint64(killedC+faultC) {
		t.Errorf("ConsumerDeaths %d after %d consumers died inside Get and %d were killed", st.ConsumerDeaths, faultC, killedC)
	}
	// Every message a consumer wrote, it had counted in Gets (the count
	// comes before Get returns); a killed one may have taken and counted
	// one more without writing it.
	if d := int64(st.Gets) - int64(delivered); d < 0 || d > int64(killedC) {
		t.Errorf("Gets %d, %d messages delivered, %d consumers killed", st.Gets, delivered, killedC)
	}
}
