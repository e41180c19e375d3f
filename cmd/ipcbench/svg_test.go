package main

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWriteSVG draws both pictures from a fake run: they are well-formed
// XML, the distribution has a line per side, and a row with a bar has it
// drawn in red.
func TestWriteSVG(t *testing.T) {
	for i, s := range []string{"ipcqueue", "raw_pingpong"} {
		var h histogram
		for j := range 1000 {
			h.record(time.Duration(300*(i+1)+j) * time.Nanosecond)
		}
		keepHist(&h)
		noteHist("queue_rtt_p50_spin", s)
	}
	defer clear(hists)
	rows := []row{
		{Metric: "queue_rtt_p50_spin", Peer: "raw_pingpong", Ratio: 0.4},
		{Metric: "queue_64B_batch_msgs_per_s", Peer: "chan_buffered", Ratio: 2.1},
		{Metric: "mutex", Peer: "flock", Ratio: 300},
	}
	dir := t.TempDir()
	if err := writeSVG(dir, rows); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"rtt.svg": 2, "ratios.svg": 2} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		d := xml.NewDecoder(strings.NewReader(string(b)))
		for {
			if _, err := d.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		mark := "<polyline"
		if name == "ratios.svg" {
			mark = `stroke="#d62728"`
		}
		if n := strings.Count(string(b), mark); n != want {
			t.Errorf("%s: %d of %q, want %d", name, n, mark, want)
		}
	}
}
