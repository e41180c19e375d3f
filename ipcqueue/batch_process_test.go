//go:build linux

package ipcqueue

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
)

// Batches, claims and Read across processes: SIGKILLed producers and
// consumers at every step, and the 4-producer, 2-consumer exactly-once
// test with everything mixed in.

// killBatch is the batch the batchkill helper puts: four 40-byte messages
// (48-byte records), numbered.
func killBatch() [][]byte {
	b := newBufs(4, 40)
	for i := range b {
		copy(b[i], fmt.Sprintf("batch message %-26d", i))
	}
	return b
}

func init() {
	// batchkill NAME STEP REC: PutBatch killBatch, SIGKILLing itself at
	// writeBatch step STEP (at stepRecord, after record REC).
	helperproc.Register("batchkill", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		step, rec := atoi(a[1]), atoi(a[2])
		recs := 0
		q.faults.batchStep = func(s int) {
			if s == stepRecord {
				recs++
				if recs-1 != rec {
					return
				}
			}
			if s == step {
				killSelf()
			}
		}
		q.PutBatch(context.Background(), killBatch())
		return errors.New("survived SIGKILL")
	})
	// repairkill NAME STEP: repair a dead producer (Stats takes the lock
	// over), SIGKILLing itself at repairProducer step STEP.
	helperproc.Register("repairkill", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		step := atoi(a[1])
		q.faults.repairStep = func(s int) {
			if s == step {
				killSelf()
			}
		}
		q.Stats()
		return errors.New("survived SIGKILL")
	})
	// commitkill NAME STEP: Reserve, fill and Commit a claim of "claimed",
	// SIGKILLing itself at Commit's step STEP (stepCommitted on).
	helperproc.Register("commitkill", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		step := atoi(a[1])
		q.faults.batchStep = func(s int) {
			if s == step {
				killSelf()
			}
		}
		cl, err := q.Reserve(context.Background(), 7)
		if err != nil {
			return err
		}
		copy(cl.Bytes(), "claimed")
		cl.Commit()
		return errors.New("survived SIGKILL")
	})
	// claimkill NAME: Reserve 30 bytes, write half, say "claimed" and
	// wait to be killed.
	helperproc.Register("claimkill", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		cl, err := q.Reserve(context.Background(), 30)
		if err != nil {
			return err
		}
		copy(cl.Bytes(), "half a messa")
		fmt.Println("claimed")
		time.Sleep(time.Hour)
		return nil
	})
	// readkill NAME K: Read up to 10 messages, SIGKILLing itself inside fn
	// at message K.
	helperproc.Register("readkill", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		k, i := atoi(a[1]), 0
		q.Read(context.Background(), 10, func([]byte) error {
			if i == k {
				killSelf()
			}
			i++
			return nil
		})
		return errors.New("survived SIGKILL")
	})
	// producemixed NAME ID COUNT: putMixed.
	helperproc.Register("producemixed", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		defer q.Close()
		return putMixed(context.Background(), q, atoi(a[1]), atoi(a[2]))
	})
	// consumemixed NAME PRODUCERS PER: getMixed until EOF, then write the
	// bitmaps of what it saw to stdout.
	helperproc.Register("consumemixed", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		defer q.Close()
		c := newChecker(atoi(a[1]), atoi(a[2]))
		if err := getMixed(context.Background(), q, c); err != nil {
			return err
		}
		w := bufio.NewWriter(os.Stdout)
		for _, s := range c.seen {
			binary.Write(w, binary.LittleEndian, s)
		}
		return w.Flush()
	})
}

// runKilled runs helper name with args and requires that it died of
// SIGKILL.
func runKilled(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := command(t, name, args...)
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() {
		t.Fatalf("%s %v: %v, want killed", name, args, err)
	}
}

// moveTo empties q and moves its indices to position pos.
func moveTo(q *Queue, pos uint64) {
	q.head.Store(pos)
	q.tail.Store(pos)
	q.freed.Store(pos)
	q.hdr(pos).Store(0)
}

// TestPutBatchKilledAtEveryStep SIGKILLs a producer at each step of
// PutBatch (after each record, too), with the batch starting where it
// wraps inside (a padding among its records) and where its first record
// wraps (the padding is the commit). Before the commit no message of it is
// ever seen and all four count as dropped; from the commit on all four are
// seen, in order. The queue goes on either way.
func TestPutBatchKilledAtEveryStep(t *testing.T) {
	want := killBatch()
	for _, start := range []uint64{200, 232} {
		for step := range numSteps {
			recs := 1
			if step == stepRecord {
				recs = len(want)
			}
			for rec := range recs {
				t.Run(fmt.Sprintf("start%d/step%d/rec%d", start, step, rec), func(t *testing.T) {
					q := namedQueue(t, 256, nil)
					moveTo(q, start)
					runKilled(t, "batchkill", q.Segment().Name(), strconv.Itoa(step), strconv.Itoa(rec))
					st := q.Stats() // repairs
					published := step >= stepCommitted
					if published != (st.Dropped == 0) || !published && st.Dropped != uint64(len(want)) {
						t.Fatalf("stats %+v after a death at step %d", st, step)
					}
					if ok, err := q.TryPut([]byte("after")); !ok || err != nil {
						t.Fatalf("TryPut after the death = %v, %v", ok, err)
					}
					got, exp := drainTry(t, q), afterBatch(published)
					if fmt.Sprint(got) != fmt.Sprint(exp) {
						t.Fatalf("step %d: consumers saw %q, want %q", step, got, exp)
					}
				})
			}
		}
	}
}

// drainTry takes every message of q with TryGet.
func drainTry(t *testing.T, q *Queue) []string {
	t.Helper()
	var got []string
	for {
		m, ok, err := q.TryGet()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return got
		}
		got = append(got, string(m))
	}
}

// afterBatch is what a queue holds after a batchkill death and a Put of
// "after": killBatch first if it was published.
func afterBatch(published bool) []string {
	exp := []string{}
	if published {
		for _, m := range killBatch() {
			exp = append(exp, string(m))
		}
	}
	return append(exp, "after")
}

// TestRepairerKilled: a producer dies inside PutBatch, before or after
// its commit, and the process that repairs it dies at each step of the
// repair. The next repair finishes the job: the batch is whole or absent,
// and an absent one counts once in Stats.Dropped, not once per repairer.
func TestRepairerKilled(t *testing.T) {
	for _, tc := range []struct{ batchStep, repairStep int }{
		{stepWritten, repairMarked},
		{stepWritten, repairCounted},
		{stepCommitted, repairTail},
	} {
		t.Run(fmt.Sprintf("batch%d/repair%d", tc.batchStep, tc.repairStep), func(t *testing.T) {
			q := namedQueue(t, 256, nil)
			name := q.Segment().Name()
			runKilled(t, "batchkill", name, strconv.Itoa(tc.batchStep), "0")
			runKilled(t, "repairkill", name, strconv.Itoa(tc.repairStep))
			st := q.Stats() // the second repair
			published := tc.batchStep >= stepCommitted
			if want := map[bool]uint64{false: uint64(len(killBatch()))}[published]; st.Dropped != want {
				t.Fatalf("stats %+v after the repairer's death; want Dropped %d", st, want)
			}
			if ok, err := q.TryPut([]byte("after")); !ok || err != nil {
				t.Fatalf("TryPut after the deaths = %v, %v", ok, err)
			}
			got, exp := drainTry(t, q), afterBatch(published)
			if fmt.Sprint(got) != fmt.Sprint(exp) {
				t.Fatalf("consumers saw %q, want %q", got, exp)
			}
		})
	}
}

// TestClaimHolderKilled: a process killed holding a claim is a producer
// killed inside Put: a Put waiting for the claim gets the lock at once
// (it follows the holder), the claimed message is never seen, and it
// counts as dropped.
func TestClaimHolderKilled(t *testing.T) {
	for _, start := range []uint64{0, 240} { // 240: a padding before it
		q := namedQueue(t, 256, nil)
		moveTo(q, start)
		p := helperproc.Start(t, command(t, "claimkill", q.Segment().Name()))
		p.Expect(t, "claimed")
		if ok, err := q.TryPut([]byte("x")); ok || err != nil {
			t.Fatalf("TryPut during a live claim = %v, %v", ok, err)
		}
		errs := make(chan error, 1)
		go func() { errs <- q.Put(t.Context(), []byte("after")) }()
		waitFor(t, "a Put waiting for the claim", func() bool { return q.plock.Sleepers().Load()&1 != 0 })
		p.Kill()
		if err := woken(t, errs, "Put waiting for a killed claim"); err != nil {
			t.Fatal(err)
		}
		if m, ok, err := q.TryGet(); !ok || err != nil || string(m) != "after" {
			t.Fatalf("TryGet = %q, %v, %v", m, ok, err)
		}
		if st := q.Stats(); st.Dropped != 1 || st.Puts != 1 || q.Len() != 0 {
			t.Fatalf("stats %+v", st)
		}
	}
}

// TestCommitKilled: a claim holder killed inside Commit, once its header
// is stored (before tail, before unlock, ...), has published its message:
// it is seen once, and nothing is dropped.
func TestCommitKilled(t *testing.T) {
	for _, start := range []uint64{0, 240} { // 240: a padding before it
		for step := stepCommitted; step < numSteps; step++ {
			q := namedQueue(t, 256, nil)
			moveTo(q, start)
			runKilled(t, "commitkill", q.Segment().Name(), strconv.Itoa(step))
			if st := q.Stats(); st.Dropped != 0 {
				t.Fatalf("start %d, step %d: stats %+v", start, step, st)
			}
			if got := drainTry(t, q); fmt.Sprint(got) != "[claimed]" {
				t.Fatalf("start %d, step %d: consumers saw %q", start, step, got)
			}
		}
	}
}

// TestReadKilledInFn: a consumer killed inside Read's fn, at its first or
// a later message, leaves every message of that Read in the queue.
func TestReadKilledInFn(t *testing.T) {
	for _, k := range []int{0, 2} {
		q := namedQueue(t, 1024, nil)
		for i := range 5 {
			q.Put(t.Context(), []byte{byte(i)})
		}
		runKilled(t, "readkill", q.Segment().Name(), strconv.Itoa(k))
		var got []byte
		n, err := q.Read(t.Context(), 10, func(m []byte) error { got = append(got, m...); return nil })
		if n != 5 || err != nil || !bytes.Equal(got, []byte{0, 1, 2, 3, 4}) {
			t.Fatalf("killed at %d: Read after = %d, %v, %v", k, n, err, got)
		}
		if st := q.Stats(); st.ConsumerDeaths != 1 || st.Gets != 5 || q.reading.Load() != 0 {
			t.Fatalf("stats %+v, reading %d", st, q.reading.Load())
		}
	}
}

// TestProcessMPMCMixed: 4 producer and 2 consumer processes, with Put,
// PutBatch, TryPutBatch, claims (some aborted), GetInto, Read and GetBatch
// mixed: each message exactly once, in order per producer, untorn.
func TestProcessMPMCMixed(t *testing.T) {
	const producers, consumers, per = 4, 2, 50000
	q := namedQueue(t, 16<<10, nil)
	name := q.Segment().Name()
	var outs []*bytes.Buffer
	var cons, prods []*exec.Cmd
	for range consumers {
		cmd := command(t, "consumemixed", name, strconv.Itoa(producers), strconv.Itoa(per))
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, &out)
		cons = append(cons, cmd)
	}
	for p := range producers {
		cmd := command(t, "producemixed", name, strconv.Itoa(p), strconv.Itoa(per))
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
	if st := q.Stats(); st.Puts != producers*per || st.Gets != st.Puts || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}
