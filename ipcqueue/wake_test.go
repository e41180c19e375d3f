//go:build linux

package ipcqueue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/robust"
)

// pingPong sends n numbered messages through ping and expects each back
// on pong before sending the next, so every Get on an empty queue (the
// handles never spin) sleeps on the futex and needs the other side's wake.
// A sleep that nobody watches has no timeout but its deadline, so a lost
// wake-up leaves it asleep until then (when it finds the message that
// came meanwhile): pingPong returns an error for the first round trip that
// takes lostAfter.
func pingPong(ping, pong *Queue, n int, lostAfter time.Duration) error {
	msg, back := make([]byte, 64), make([]byte, 64)
	for i := range n {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), lostAfter)
		binary.LittleEndian.PutUint64(msg, uint64(i))
		if err := ping.Put(ctx, msg); err != nil {
			cancel()
			return err
		}
		_, err := pong.GetInto(ctx, back)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) || time.Since(start) >= lostAfter {
			return fmt.Errorf("round %d did not come back within %v: a lost wake-up", i, lostAfter)
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(msg, back) {
			return fmt.Errorf("round %d came back as %x", i, back[:8])
		}
	}
	return nil
}

// lostAfter bounds a round trip of TestNoLostWakeups: it takes some
// microseconds, and only a lost wake-up makes one take seconds.
const lostAfter = 10 * time.Second

// TestNoLostWakeups: ping-pong with spinning off, so that each round trip
// is two futex sleeps and two wakes, between goroutines over heap queues
// and between processes. No wake-up may be lost: an unwatched sleep (no
// producer of another process to follow) would not come back (see
// pingPong, and TestLostWakeupSeen for a skipped wake caught so), and a
// watched one would end at its slow check (robust.Unwoken, which each
// process counts; one in 2,000 round trips is tolerated, for a producer
// that a loaded machine keeps off the CPU for 100 ms between its commit and
// its wake). One round trip before counting lets the other side start (a
// child under the race detector can take over 100 ms).
func TestNoLostWakeups(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	t.Run("goroutines", func(t *testing.T) {
		ping, pong := spinning(heapQueue(t, 4096, nil), -1), spinning(heapQueue(t, 4096, nil), -1)
		done := make(chan error, 1)
		go func() { done <- echoAll(ping, pong) }()
		err := pingPong(ping, pong, n, lostAfter)
		ping.Shutdown()
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("processes", func(t *testing.T) {
		ping, pong := spinning(namedQueue(t, 4096, nil), -1), spinning(namedQueue(t, 4096, nil), -1)
		cmd := command(t, "echo", ping.Segment().Name(), pong.Segment().Name(), spinArg(-1))
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		err := pingPong(ping, pong, 1, time.Minute)
		before := robust.Unwoken()
		if err == nil {
			err = pingPong(ping, pong, n, lostAfter)
		}
		lost := robust.Unwoken() - before
		ping.Shutdown()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("echo child: %v", err)
		}
		var child uint64
		if _, err := fmt.Sscanf(out.String(), "unwoken %d", &child); err != nil {
			t.Fatalf("echo child said %q: %v", out.String(), err)
		}
		t.Logf("watched sleeps that ran into their slow check: %d here, %d in the child", lost, child)
		if lost+child > uint64(n/2000) {
			t.Fatalf("%d watched sleeps in %d round trips ran into their slow check: lost wake-ups", lost+child, n)
		}
	})
}

// TestLostWakeupSeen shows that TestNoLostWakeups sees a lost wake-up:
// once the echo side skips every wake-up it owes (a fault hook), a round
// trip soon fails to come back.
func TestLostWakeupSeen(t *testing.T) {
	ping, pong := spinning(heapQueue(t, 4096, nil), -1), spinning(heapQueue(t, 4096, nil), -1)
	var skip atomic.Bool
	var skipped atomic.Int64
	pong.faults.skipWake = func() bool {
		if !skip.Load() {
			return false
		}
		skipped.Add(1)
		return true
	}
	done := make(chan error, 1)
	go func() { done <- echoAll(ping, pong) }()
	defer func() {
		ping.Shutdown()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if err := pingPong(ping, pong, 100, lostAfter); err != nil {
		t.Fatalf("before the fault: %v", err)
	}
	skip.Store(true)
	err := pingPong(ping, pong, 1000, 200*time.Millisecond)
	if err == nil {
		t.Fatalf("%d wake-ups skipped, and every round trip came back", skipped.Load())
	}
	t.Logf("%d wake-ups skipped: %v", skipped.Load(), err)
}
