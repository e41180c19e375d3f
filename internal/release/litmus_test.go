package release

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/emulator"
)

// Store buffering
//
// The Go memory model makes sync/atomic sequentially consistent: all atomic
// operations of a program behave as if executed in one order that every
// goroutine agrees on. So in the store-buffering litmus test
//
//	goroutine A: x.Store(1); r1 := y.Load()
//	goroutine B: y.Store(1); r2 := x.Load()
//
// the outcome r1 == 0 && r2 == 0 is forbidden: whichever Store comes first in
// that order, the other goroutine's Load comes after it. Hardware running Go
// never shows it: amd64's atomic Store is an XCHG (a full fence), and on arm64
// an STLR followed by an LDAR is ordered. The cross-process protocols of
// ipckit lean on exactly this guarantee (the Dekker-style wake-up of
// ipcqueue's wait.go, the robust lock's hand-off, every "store, then check
// whether someone sleeps").
//
// qemu-user, running arm64 binaries on an amd64 host, translates STLR and
// LDAR into plain x86 moves without the fence in between, and shows the
// forbidden outcome in a large fraction of trials (issue 14 measured 19,366
// in 100,000). Under it, a test of ordering proves nothing either way: a
// failure may be the emulator's, and a pass says nothing of real arm64. That
// is why CI's emulated arm64 stage (.ci/arm64) skips the ordering-dependent
// tests, and why the argument for arm64 ordering is made from the memory
// model instead (the layout docs). This test measures the emulator's
// behaviour and logs it; on real hardware it asserts that the forbidden
// outcome never shows.

// A store-buffering test runs sbTrials trials, in batches of sbBatch, or
// as many batches as fit in sbBudget: 100,000 take well under a second
// natively and a few seconds under qemu-user, but a minute under the race
// detector, whose atomics are slow (and sequentially consistent anyway).
const (
	sbTrials = 100_000
	sbBatch  = 1_000
	sbBudget = 2 * time.Second
)

// sbRun runs store-buffering trials (see sbOutcomes) within sbTrials and
// sbBudget, and returns how many it ran and their outcomes.
func sbRun(store func(p *atomic.Uint64, v uint64)) (n int, counts [2][2]int) {
	start := time.Now()
	for n < sbTrials && (n == 0 || time.Since(start) < sbBudget) {
		c := sbOutcomes(sbBatch, store)
		for i := range 2 {
			for j := range 2 {
				counts[i][j] += c[i][j]
			}
		}
		n += sbBatch
	}
	return n, counts
}

// sbOutcomes counts the outcomes (r1, r2) of n store-buffering trials in
// which each goroutine stores with store and loads with Load.
func sbOutcomes(n int, store func(p *atomic.Uint64, v uint64)) (counts [2][2]int) {
	type word struct {
		atomic.Uint64
		_ [56]byte // one cache line per word
	}
	xs, ys := make([]word, n), make([]word, n)
	r1, r2 := make([]uint8, n), make([]uint8, n)
	// The two goroutines meet before each trial (each announces the trial it
	// reached and waits for the other), so that their stores and loads
	// overlap in time.
	var reachedA, reachedB atomic.Int64
	run := func(me, other *atomic.Int64, mine, theirs []word, r []uint8) {
		for i := range n {
			me.Store(int64(i + 1))
			for other.Load() < int64(i+1) {
			}
			store(&mine[i].Uint64, 1)
			r[i] = uint8(theirs[i].Load())
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { run(&reachedA, &reachedB, xs, ys, r1) })
	wg.Go(func() { run(&reachedB, &reachedA, ys, xs, r2) })
	wg.Wait()
	for i := range n {
		counts[r1[i]][r2[i]]++
	}
	return counts
}

// TestStoreBuffering runs the store-buffering litmus test on sync/atomic:
// 0 forbidden outcomes on real hardware (asserted), and whatever an emulator
// shows (logged). See "Store buffering" above.
func TestStoreBuffering(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 || runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs for the goroutines to overlap")
	}
	n, c := sbRun((*atomic.Uint64).Store)
	forbidden := c[0][0]
	t.Logf("sync/atomic Store then Load on %s: %d trials; r1=0,r2=0 (forbidden) %d; r1=0,r2=1 %d; r1=1,r2=0 %d; r1=1,r2=1 %d",
		runtime.GOARCH, n, forbidden, c[0][1], c[1][0], c[1][1])
	if e := emulator.Detected(); e != "" {
		if forbidden > 0 {
			t.Logf("emulated (%s): %d of %d trials broke Go's sequentially consistent atomics; "+
				"ordering tests prove nothing here and are skipped in this stage", e, forbidden, n)
		} else {
			t.Logf("emulated (%s): no forbidden outcome in this run, which still proves nothing about real hardware", e)
		}
		return
	}
	if forbidden > 0 {
		t.Fatalf("%d of %d trials saw the outcome the Go memory model forbids: this platform breaks sync/atomic "+
			"(an emulator? set IPCKIT_EMULATED)", forbidden, n)
	}
	if c[1][1] == 0 {
		t.Logf("the goroutines never overlapped (no r1=1,r2=1): the test was weak in this run")
	}
}

// TestStoreBufferingRelease runs the same test with Store64, a release
// store, and only logs: release and acquire alone allow the outcome that
// sequential consistency forbids, and on amd64 (where Store64 is a plain
// MOV) the hardware shows it. That is why every ipckit path that stores with
// Store64 and then loads a word to decide whether to wake someone makes a
// full fence (an atomic add) in between (ipcqueue's Put and Get).
func TestStoreBufferingRelease(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 || runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs for the goroutines to overlap")
	}
	n, c := sbRun(Store64)
	t.Logf("release.Store64 then Load on %s: %d trials; r1=0,r2=0 %d (allowed for release stores); r1=0,r2=1 %d; r1=1,r2=0 %d; r1=1,r2=1 %d",
		runtime.GOARCH, n, c[0][0], c[0][1], c[1][0], c[1][1])
}
