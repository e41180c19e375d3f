//go:build linux

package ipcqueue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/robust"
)

// pingPong sends n numbered messages through ping and expects each back
// on pong before sending the next, so every Get on an empty queue (the
// handles never spin) sleeps on the futex and needs the other side's wake.
// A sleep that nobody watches has no timeout, so a lost wake-up leaves it
// asleep: a round trip that takes longer than lostAfter fails the test.
func pingPong(t *testing.T, ping, pong *Queue, n int) {
	t.Helper()
	const lostAfter = 10 * time.Second // a round trip takes some microseconds
	msg, back := make([]byte, 64), make([]byte, 64)
	for i := range n {
		ctx, cancel := context.WithTimeout(t.Context(), lostAfter)
		binary.LittleEndian.PutUint64(msg, uint64(i))
		if err := ping.Put(ctx, msg); err != nil {
			t.Fatal(err)
		}
		_, err := pong.GetInto(ctx, back)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d did not come back within %v: a lost wake-up", i, lostAfter)
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(msg, back) {
			t.Fatalf("round %d came back as %x", i, back[:8])
		}
	}
}

// TestNoLostWakeups: ping-pong with spinning off, so that each round trip
// is two futex sleeps and two wakes; no wake-up may be lost (the round
// trip would not come back: see pingPong), and (almost: see lostWakeups)
// no sleep may end unwoken (robust.Unwoken: a watched sleep's slow check
// running out, or a spurious wake-up), on either side: between goroutines
// over a heap queue, and between processes (the child reports its own
// count). A missing wake fails it (checked by skipping one in a thousand,
// in either process); the store-buffer race that the fences close is
// nanoseconds wide and is rarely hit even without them. One round trip
// before counting lets the other side start (a child under the race
// detector can take over 100 ms).
func TestNoLostWakeups(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	t.Run("goroutines", func(t *testing.T) {
		ping, pong := spinning(heapQueue(t, 4096, nil), -1), spinning(heapQueue(t, 4096, nil), -1)
		done := make(chan error, 1)
		go func() { done <- echoAll(ping, pong) }()
		pingPong(t, ping, pong, 1)
		before := robust.Unwoken()
		pingPong(t, ping, pong, n)
		lost := robust.Unwoken() - before
		ping.Shutdown()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		lostWakeups(t, lost, n)
	})
	t.Run("processes", func(t *testing.T) {
		ping, pong := spinning(namedQueue(t, 4096, nil), -1), spinning(namedQueue(t, 4096, nil), -1)
		cmd := command(t, "echo", ping.Segment().Name(), pong.Segment().Name(), spinArg(-1))
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pingPong(t, ping, pong, 1)
		before := robust.Unwoken()
		pingPong(t, ping, pong, n)
		lost := robust.Unwoken() - before
		ping.Shutdown()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("echo child: %v", err)
		}
		var child uint64
		if _, err := fmt.Sscanf(out.String(), "unwoken %d", &child); err != nil {
			t.Fatalf("echo child said %q: %v", out.String(), err)
		}
		lostWakeups(t, lost, n)
		lostWakeups(t, child, n)
	})
}

// lostWakeups fails the test if more than one in 10,000 of n round trips
// had a sleep end unwoken: at its slow check (100 ms) without a wake, or
// woken for nothing. A machine stalled for 100 ms (the race detector's CI
// runs every package at once on two cores) can make one.
func lostWakeups(t *testing.T, unwoken uint64, n int) {
	t.Helper()
	if unwoken > uint64(n/10000) {
		t.Fatalf("%d sleeps in %d round trips ended unwoken: lost wake-ups", unwoken, n)
	}
}
