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
// (ping-pong), or a request of a few messages per wait, pauses only on its
// probes, once every paceProbe waits.
func TestPacerRequestResponse(t *testing.T) {
	for _, perRequest := range []int{1, 2, paceStream - 1} {
		var p pacer
		paused := 0
		for range 10 * paceProbe {
			if waitThenTake(&p, perRequest) {
				paused++
			}
		}
		if paused != 10 || p.on {
			t.Fatalf("%d messages a request: %d of %d waits paused, want 10 (one probe per %d); pacing on: %v",
				perRequest, paused, 10*paceProbe, paceProbe, p.on)
		}
	}
}

// TestPacerStream: a probe followed by several messages turns pacing on;
// it stays on while the waits keep yielding batches, and goes off at the
// first paused wait that yields fewer than paceStream.
func TestPacerStream(t *testing.T) {
	var p pacer
	for range paceProbe - 1 {
		if waitThenTake(&p, 1) {
			t.Fatal("paused before the first probe")
		}
	}
	if !waitThenTake(&p, paceStream+1) {
		t.Fatal("the probe did not pause")
	}
	for i := range 100 {
		if !waitThenTake(&p, paceStream) {
			t.Fatalf("wait %d of a stream did not pause", i)
		}
	}
	waitThenTake(&p, paceStream-1) // paused; yields fewer than a stream
	if waitThenTake(&p, 1) {
		t.Fatal("still pausing after a paused wait yielded fewer than paceStream messages")
	}
}
