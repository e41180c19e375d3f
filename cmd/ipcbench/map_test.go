package main

import (
	"testing"
	"time"
)

// TestMapMetrics measures both map figures once, briefly: each side, the
// child's included, runs and stops.
func TestMapMetrics(t *testing.T) {
	cfg := &config{rounds: 1, target: time.Millisecond}
	for _, m := range mapMetrics() {
		rows, err := measureMetric(cfg, m)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if len(rows) != 1 || rows[0].Ours <= 0 || rows[0].PeerValue <= 0 {
			t.Fatalf("%s: rows %+v", m.name, rows)
		}
	}
}
