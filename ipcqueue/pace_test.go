package ipcqueue

import "testing"

// waitThenTake drives p as a consumer does: a wait (which may pause), then
// took messages taken before the next wait. It reports whether the wait
// paused.
func waitThenTake(p *pacer, took int) bool {
	p.wait()
	paused := p.probed
	p.took += took
	return paused
}

// TestPacerRequestResponse: a consumer that takes one message per wait
// (ping-pong) pauses only on its probes, once every paceProbe waits.
func TestPacerRequestResponse(t *testing.T) {
	var p pacer
	paused := 0
	for range 10 * paceProbe {
		if waitThenTake(&p, 1) {
			paused++
		}
	}
	if paused != 10 {
		t.Fatalf("%d of %d waits paused, want 10 (one probe per %d)", paused, 10*paceProbe, paceProbe)
	}
	if p.on {
		t.Fatal("pacing is on for request-response traffic")
	}
}

// TestPacerStream: a probe followed by several messages turns pacing on;
// it stays on while the waits keep yielding batches, and goes off at the
// first wait that yields a single message.
func TestPacerStream(t *testing.T) {
	var p pacer
	for range paceProbe - 1 {
		if waitThenTake(&p, 1) {
			t.Fatal("paused before the first probe")
		}
	}
	if !waitThenTake(&p, 5) {
		t.Fatal("the probe did not pause")
	}
	for i := range 100 {
		if !waitThenTake(&p, 3) {
			t.Fatalf("wait %d of a stream did not pause", i)
		}
	}
	waitThenTake(&p, 1) // paused; yields one message
	if waitThenTake(&p, 1) {
		t.Fatal("still pausing after a paused wait yielded a single message")
	}
}
