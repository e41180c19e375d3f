package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/ipckit/ipckit/shm"
)

// Watching
//
// watch samples an object every interval and prints its state with the
// rate of each of its counters (shm.Report's Counters: a queue's Puts,
// Gets, Waits, ...) since the sample before: on a terminal, top-like, the
// screen cleared and redrawn; otherwise one JSON object per sample. It
// maps the segment afresh at each sample (the pids of its live holders are
// those of a process scan at the start), and stops when the segment can
// no longer be read (its last line says why) or after -n samples.

// sample is one line of watch's JSON output.
type sample struct {
	Time     time.Time
	Name     string             `json:",omitempty"`
	Path     string             // the file read
	Kind     string             `json:",omitempty"`
	Counters map[string]uint64  `json:",omitempty"`
	Rates    map[string]float64 `json:",omitempty"` // per second, since the previous sample
	State    shm.Report         `json:",omitempty"`
}

func (c *cli) watch(args []string) error {
	fs := c.flags("watch")
	count := fs.Int("n", 0, "stop after this many samples (0: never)")
	every := fs.Duration("interval", time.Second, "time between samples")
	asJSON := fs.Bool("json", false, "print JSON lines even on a terminal")
	if err := parse(fs, args); err != nil {
		return err
	}
	t, err := parseTarget(fs.Args())
	if err != nil {
		return err
	}
	if *every <= 0 || *count < 0 {
		return fmt.Errorf("%w: -interval %v and -n %d must be positive", errUsage, *every, *count)
	}
	// Processes are scanned once, for the pids of live holders: a scan
	// reads every process's maps, too slow to repeat every second on a
	// busy machine.
	scan, err := scanProcs()
	if err != nil {
		return err
	}
	term := !*asJSON && isTerminal(c.stdout)
	var prev *sample
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for i := 0; *count == 0 || i < *count; i++ {
		if i > 0 {
			<-tick.C
		}
		o := t.inspect(scan)
		if o.err != nil {
			return o.err
		}
		s := &sample{Time: time.Now(), Name: o.Name, Path: o.Path, Kind: o.Kind, State: o.info.Report}
		if s.State != nil {
			s.Counters = s.State.Counters()
		}
		s.Rates = rates(prev, s)
		prev = s
		if term {
			drawScreen(c.stdout, o, s)
		} else if err := json.NewEncoder(c.stdout).Encode(s); err != nil {
			return err
		}
	}
	return nil
}

// rates returns the rate per second of each counter of s since prev (nil
// for the first sample).
func rates(prev, s *sample) map[string]float64 {
	if prev == nil || len(s.Counters) == 0 {
		return nil
	}
	dt := s.Time.Sub(prev.Time).Seconds()
	r := map[string]float64{}
	for k, v := range s.Counters {
		if p, ok := prev.Counters[k]; ok && dt > 0 && v >= p {
			r[k] = float64(v-p) / dt
		}
	}
	return r
}

// drawScreen clears the terminal and draws one sample, top-like.
func drawScreen(w io.Writer, o *object, s *sample) {
	fmt.Fprint(w, "\x1b[H\x1b[2J")
	fmt.Fprintf(w, "ipcs watch %s (%s)  %s\n\n", o.label(), o.Kind, s.Time.Format(time.TimeOnly))
	if len(s.Counters) > 0 {
		fmt.Fprintf(w, "%-16s %14s %12s\n", "COUNTER", "VALUE", "PER SECOND")
		for _, k := range slices.Sorted(maps.Keys(s.Counters)) {
			rate := "-"
			if r, ok := s.Rates[k]; ok {
				rate = fmt.Sprintf("%.1f", r)
			}
			fmt.Fprintf(w, "%-16s %14d %12s\n", k, s.Counters[k], rate)
		}
		fmt.Fprintln(w)
	}
	render(w, s.State, "")
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
