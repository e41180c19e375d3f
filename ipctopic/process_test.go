//go:build linux

package ipctopic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/robust"
)

// startSub starts a "sub" helper on tp (with args after the name) and
// waits until it has joined.
func startSub(t *testing.T, tp *Topic, args ...string) *helperproc.Proc {
	t.Helper()
	p := helperproc.Start(t, command(t, "sub", append([]string{tp.Segment().Name()}, args...)...))
	p.Expect(t, "joined")
	return p
}

// expectDone reads a "sub" helper's final line and checks that it received
// n messages from first on, whole and in order (the helper checks order
// and wholeness itself and fails otherwise), and that it exits cleanly.
func expectDone(t *testing.T, p *helperproc.Proc, first uint64, n int) {
	t.Helper()
	p.Expect(t, fmt.Sprintf("done %d %d", first, n))
	if err := p.Cmd.Wait(); err != nil {
		t.Fatalf("subscriber: %v", err)
	}
}

// TestProcessFanout: one publisher (this process) and 4 subscriber
// processes, block policy, a ring far smaller than the stream: every
// subscriber receives every message, whole and in order.
func TestProcessFanout(t *testing.T) {
	const n = 100_000
	tp := namedTopic(t, &Options{Slots: 64, MaxMsg: 64})
	var subs []*helperproc.Proc
	for range 4 {
		subs = append(subs, startSub(t, tp))
	}
	buf := make([]byte, 64)
	for i := range uint64(n) {
		if err := tp.Publish(t.Context(), makeMsg(buf, i)); err != nil {
			t.Fatal(err)
		}
	}
	tp.Shutdown()
	for _, p := range subs {
		expectDone(t, p, 0, n)
	}
	st := tp.Stats()
	if st.Published != n || st.Dropped != 0 || st.Reclaimed != 0 || st.Subscribers != 0 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("stats %+v", st)
}

// TestSubscriberKilled: a subscriber process stops reading mid-stream and
// is SIGKILLed; the publisher, blocked behind it, reclaims its slot and
// goes on, and the other subscriber receives everything.
func TestSubscriberKilled(t *testing.T) {
	const n, stop = 5000, 100
	tp := namedTopic(t, &Options{Slots: 16, MaxMsg: 64})
	good := startSub(t, tp)
	bad := startSub(t, tp, fmt.Sprint(stop))
	buf := make([]byte, 64)
	type kill struct {
		at      time.Time
		unwoken uint64
	}
	killed := make(chan kill, 1)
	go func() {
		// After "got STOP" the subscriber reads no more: the publisher
		// fills the ring and blocks on it. Kill it once the publisher
		// sleeps.
		if line := bad.Line(t); line != fmt.Sprintf("got %d", stop) {
			t.Errorf("stalling subscriber said %q", line)
		}
		for tp.gate.Load() != stop+1 { // the cursor message stop+16 needs
			time.Sleep(time.Millisecond)
		}
		unwoken := robust.Unwoken()
		bad.Kill()
		killed <- kill{time.Now(), unwoken}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // only a publisher stuck behind the dead subscriber misses it
	defer cancel()
	var blocked time.Time
	for i := range uint64(n) {
		if i == stop+16 {
			blocked = time.Now()
		}
		if err := tp.Publish(ctx, makeMsg(buf, i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i == stop+16 {
			k := <-killed
			if k.at.Before(blocked) {
				t.Fatal("the publisher did not block behind the stalled subscriber")
			}
			if robust.Unwoken() != k.unwoken {
				t.Fatal("the publisher found the subscriber dead at its slow check, not at the kernel's notice of the death")
			}
			t.Logf("message %d published %v after the kill", i, time.Since(k.at))
		}
	}
	tp.Shutdown()
	expectDone(t, good, 0, n)
	if st := tp.Stats(); st.Reclaimed != 1 || st.Published != n {
		t.Fatalf("stats %+v, want 1 reclaimed", st)
	}
}

// TestJoinMidStream: subscriber processes join while a publisher streams:
// each receives every message from one published after it joined (no
// later than the count seen once it said so) to the end, in order.
func TestJoinMidStream(t *testing.T) {
	const n = 60_000
	tp := namedTopic(t, &Options{Slots: 32, MaxMsg: 64})
	type joined struct {
		p              *helperproc.Proc
		before, latest uint64
	}
	var subs []joined
	buf := make([]byte, 64)
	for i := range uint64(n) {
		if i%20_000 == 5_000 {
			before := tp.Stats().Published
			p := startSub(t, tp) // the publisher is paused meanwhile: nothing missed
			subs = append(subs, joined{p, before, tp.Stats().Published})
		}
		if err := tp.Publish(t.Context(), makeMsg(buf, i)); err != nil {
			t.Fatal(err)
		}
	}
	tp.Shutdown()
	for _, s := range subs {
		line := s.p.Line(t)
		var first uint64
		var got int
		if _, err := fmt.Sscanf(line, "done %d %d", &first, &got); err != nil {
			t.Fatalf("subscriber said %q", line)
		}
		if first < s.before || first > s.latest || uint64(got) != n-first {
			t.Fatalf("joined between messages %d and %d: received %d from %d on, want all from one of those to %d", s.before, s.latest, got, first, n)
		}
		if err := s.p.Cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPublisherKilled: a publisher process is SIGKILLed inside Publish,
// holding the publisher lock: after writing the payload (the message is
// dropped, counted, and never seen), or after committing it (the message
// is delivered whole). The next Publish repairs and goes on, and a
// subscriber that waited meanwhile receives only whole messages.
func TestPublisherKilled(t *testing.T) {
	for _, step := range []string{"copied", "committed"} {
		t.Run(step, func(t *testing.T) {
			tp := namedTopic(t, &Options{Slots: 4, MaxMsg: 64})
			s := subscribe(t, tp)
			err := command(t, "crashpub", tp.Segment().Name(), step).Run()
			if err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("crashpub: %v", err)
			}
			if h, _ := tp.plock.Holder(); h == 0 {
				t.Fatal("the killed publisher did not hold the lock")
			}
			// Before any repair: message 0, and message 1 only if it was
			// committed; a half-published one is never seen.
			if m, err := s.Recv(t.Context()); err != nil || string(m) != string(makeMsg(make([]byte, 64), 0)) {
				t.Fatalf("first message: %q, %v", m, err)
			}
			short, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			m, err := s.Recv(short)
			cancel()
			if step == "copied" && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("received %q, %v: a message its publisher never committed", m, err)
			}
			if step == "committed" && (err != nil || string(m) != string(makeMsg(make([]byte, 64), 1))) {
				t.Fatalf("committed message: %q, %v", m, err)
			}
			buf := make([]byte, 64)
			if err := tp.Publish(t.Context(), makeMsg(buf, 2)); err != nil {
				t.Fatal(err)
			}
			want, published, dropped := []uint64{2}, uint64(3), uint64(0)
			if step == "copied" {
				published, dropped = 2, 1
			}
			tp.Shutdown()
			var got []uint64
			for {
				m, err := s.Recv(t.Context())
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatal(err)
					}
					break
				}
				seq, err := parseMsg(m)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("received %v, want %v", got, want)
			}
			if st := tp.Stats(); st.Dropped != dropped || st.Published != published {
				t.Fatalf("stats %+v, want %d dropped", st, dropped)
			}
		})
	}
}

// TestRepairerKilled: a publisher is SIGKILLed writing a message, and the
// process that takes the lock over is SIGKILLed too, right after its
// repair. The next Publish repairs again: the message lost is counted
// once, and nothing torn or dropped is delivered.
func TestRepairerKilled(t *testing.T) {
	tp := namedTopic(t, &Options{Slots: 4, MaxMsg: 64})
	s := subscribe(t, tp)
	for _, step := range []string{"copied", "repair"} {
		err := command(t, "crashpub", tp.Segment().Name(), step).Run()
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("crashpub %s: %v", step, err)
		}
	}
	if h, _ := tp.plock.Holder(); h == 0 {
		t.Fatal("the killed repairer did not hold the lock")
	}
	buf := make([]byte, 64)
	if err := tp.Publish(t.Context(), makeMsg(buf, 2)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{0, 2} {
		m, err := s.Recv(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if seq, err := parseMsg(m); err != nil || seq != want {
			t.Fatalf("received %d (%v), want message %d", seq, err, want)
		}
	}
	if st := tp.Stats(); st.Dropped != 1 || st.Published != 2 {
		t.Fatalf("stats %+v, want 1 dropped of 2 published", st)
	}
}

// TestPublisherKilledSubscriberAsleep: a subscriber goes to sleep waiting
// for a message while a publisher process holds the publisher lock; that
// publisher commits the message and is SIGKILLed before its wake-up. The
// subscriber, following the lock's holder, is woken by the kernel's
// notice of the death, repairs, and receives the message.
func TestPublisherKilledSubscriberAsleep(t *testing.T) {
	tp := namedTopic(t, &Options{Slots: 4, MaxMsg: 64})
	s := subscribe(t, tp)
	cmd := command(t, "crashpub", tp.Segment().Name(), "asleep")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // only a subscriber left asleep reaches it
	defer cancel()
	if m, err := s.Recv(ctx); err != nil || string(m) != string(makeMsg(make([]byte, 64), 0)) {
		t.Fatalf("first message: %q, %v", m, err)
	}
	stamp, _, _ := tp.slot(1)
	for stamp.Load() != 2|stampWriting { // the publisher holds the lock, writing message 1
		if err := ctxSleep(t); err != nil {
			t.Fatal(err)
		}
	}
	m, err := s.Recv(ctx)
	if err != nil || string(m) != string(makeMsg(make([]byte, 64), 1)) {
		t.Fatalf("message committed by a publisher killed before its wake-up: %q, %v", m, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the subscriber slept until its deadline: nobody woke it when the publisher died")
	}
	if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("crashpub: %v", err)
	}
	if err := tp.Publish(ctx, makeMsg(make([]byte, 64), 2)); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(ctx); err != nil || string(m) != string(makeMsg(make([]byte, 64), 2)) {
		t.Fatalf("message after the repair: %q, %v", m, err)
	}
	if st := tp.Stats(); st.Published != 3 || st.Dropped != 0 {
		t.Fatalf("stats %+v, want 3 published", st)
	}
}
