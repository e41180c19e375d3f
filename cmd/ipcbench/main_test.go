package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ipckit/ipckit/spawn"
)

func TestMain(m *testing.M) {
	spawn.Main()
	m.Run()
}

// TestMetricNames: every metric, in order, each with something to measure.
func TestMetricNames(t *testing.T) {
	want := []string{
		"queue_64B_msgs_per_s", "queue_rtt_p50_spin", "queue_rtt_p99_spin", "queue_rtt_p50_block",
		"queue_rtt_p99_block", "queue_64KiB_MB_per_s", "queue_64B_batch_msgs_per_s",
		"topic_64B_msgs_per_s", "topic_rtt_p50_spin", "deadline_late_p99_us", "mutex_uncontended_ns", "mutex_handoff_2proc_ns",
		"filemutex_uncontended_ns", "value_add_ns", "spawn_start_wait_ms", "pool_go_us_per_task",
		"pool_map_us_per_item", "pool_map_cpu_speedup", "map_get_ns", "map_set_ns",
		"pipe_rtt_p50", "pipe_64B_msgs_per_s",
		"cluster_go_us_per_task", "cluster_map_us_per_item", "cluster_cpu10ms_jobs_per_s",
	}
	var got []string
	for _, m := range metrics() {
		got = append(got, m.name)
		if m.ours.run == nil || len(m.peers) == 0 {
			t.Errorf("%s has nothing to measure", m.name)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("metrics %v, want %v", got, want)
	}
}

// TestMeasure: two cheap metrics end to end: measured, the ratio oriented
// and unrounded (a target is judged on it), the JSON keys.
func TestMeasure(t *testing.T) {
	cfg := &config{rounds: 1, target: time.Millisecond}
	for _, m := range metrics() {
		if m.name != "value_add_ns" && m.name != "mutex_uncontended_ns" {
			continue
		}
		rows, err := measureMetric(cfg, m)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(m.peers) {
			t.Fatalf("%s: %d rows for %d peers", m.name, len(rows), len(m.peers))
		}
		for _, r := range rows {
			if r.Ours <= 0 || r.PeerValue <= 0 || r.Ratio != r.PeerValue/r.Ours {
				t.Errorf("row %+v: a lower-is-better ratio must be peer/ours, unrounded", r)
			}
			b, _ := json.Marshal(r)
			var keys map[string]any
			json.Unmarshal(b, &keys)
			for _, k := range []string{"metric", "unit", "ours", "peer", "peer_value", "ratio"} {
				if _, ok := keys[k]; !ok {
					t.Errorf("JSON %s lacks %q", b, k)
				}
			}
		}
	}
}

// TestRawRing: the reference rings deliver every message (the last one
// checked, and the counters of the one that counts) and measure a rate.
func TestRawRing(t *testing.T) {
	for _, f := range []rawFences{rawBare, rawLockOnly, rawLockAdd} {
		mps, err := rawRate(&config{quick: true}, f)
		if err != nil || mps <= 0 {
			t.Fatalf("rawRate(fences %d): %v msgs/s, %v", f, mps, err)
		}
	}
}

// TestRawCrossing: the bare crossing runs and names itself.
func TestRawCrossing(t *testing.T) {
	cfg := &config{quick: true}
	ns, err := rawCrossing(cfg)
	if err != nil || ns <= 0 || math.IsNaN(ns) {
		t.Fatalf("rawCrossing = %v ns, %v", ns, err)
	}
	if s := describeCrossing(cfg, "start"); !strings.HasPrefix(s, "# raw cross-process round trip (start): ") {
		t.Fatalf("describeCrossing = %q", s)
	}
}
