// Command ipcbench measures ipckit beside what a user would use instead
// (channels, pipes, Unix sockets, flock, os/exec, goroutines), in one run on
// one machine, and prints each figure with its peer's and the ratio.
//
// Usage:
//
//	go run ./cmd/ipcbench [-quick] [-json] [-only REGEX] [-svg DIR]
//
// A ratio above 1 means ipckit is better, whatever the unit. Each metric is
// warmed up, then ipckit and its peers are measured in alternation for
// several rounds and the median round is reported; latencies are
// percentiles of a histogram of every sample. Progress goes to stderr.
//
// The table prints every figure to three significant digits; -json prints
// the unrounded values, and a ratio is judged against a target on those
// (0.7689 does not meet 0.77, though it rounds to it).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ipckit/ipckit/spawn"
)

// side is one thing measured: ipckit or a peer.
type side struct {
	name string
	run  func(*config) (float64, error)
}

// metric is a figure of ipckit's and the peers it is compared with.
type metric struct {
	name, unit string
	higher     bool // a higher figure is better
	ours       side
	peers      []side
}

type config struct {
	quick  bool
	rounds int
	target time.Duration // how long one timed run of a throughput figure lasts
}

// row is one line of output: the keys are the -json format. Its values are
// unrounded; the table rounds them as it prints them.
type row struct {
	Metric    string  `json:"metric"`
	Unit      string  `json:"unit"`
	Ours      float64 `json:"ours"`
	Peer      string  `json:"peer"`
	PeerValue float64 `json:"peer_value"`
	Ratio     float64 `json:"ratio"`
}

func main() {
	if os.Getenv(exitEnv) != "" {
		return // the os/exec peer of spawn_start_wait_ms: a re-run that exits at once
	}
	spawn.Main() // in a child started by spawn, runs its function and exits
	quick := flag.Bool("quick", false, "a short run (under 60 s on 2 cores)")
	asJSON := flag.Bool("json", false, "print one JSON object a line")
	only := flag.String("only", "", "run only the metrics matching this regular expression")
	svgDir := flag.String("svg", "", "also draw the round-trip distributions and the ratios as SVG files in this directory")
	flag.Parse()
	re, err := regexp.Compile(*only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipcbench: -only:", err)
		os.Exit(2)
	}
	cfg := &config{quick: *quick, rounds: 5, target: 300 * time.Millisecond}
	if cfg.quick {
		cfg.rounds, cfg.target = 3, 100*time.Millisecond
	}

	machine := describeMachine() + describeCrossing(cfg, "start")
	if *asJSON {
		fmt.Fprint(os.Stderr, machine)
	} else {
		fmt.Print(machine)
	}
	var rows []row
	failed := false
	for _, m := range metrics() {
		if !re.MatchString(m.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "ipcbench: %s ...\n", m.name)
		r, err := measureMetric(cfg, m)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ipcbench: %s: %v\n", m.name, err)
			failed = true
			continue
		}
		rows = append(rows, r...)
		if *asJSON {
			enc := json.NewEncoder(os.Stdout)
			for _, x := range r {
				enc.Encode(x)
			}
		}
	}
	if !*asJSON {
		printTable(os.Stdout, rows)
		fmt.Print(describeCrossing(cfg, "end"))
	} else {
		fmt.Fprint(os.Stderr, describeCrossing(cfg, "end"))
	}
	if *svgDir != "" {
		if err := writeSVG(*svgDir, rows); err != nil {
			fmt.Fprintln(os.Stderr, "ipcbench: -svg:", err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// metrics lists every metric, in the order they are printed.
func metrics() []metric {
	return slices.Concat(
		queueMetrics(),
		[]metric{batchMetric()},
		topicMetrics(),
		[]metric{deadlineMetric()},
		mutexMetrics(),
		valueMetrics(),
		spawnMetrics(),
		poolMetrics(),
		mapMetrics(),
		pipeMetrics(),
		clusterMetrics(),
	)
}

// measureMetric warms every side up, then measures them in alternation and
// keeps each side's median round.
func measureMetric(cfg *config, m metric) ([]row, error) {
	sides := append([]side{m.ours}, m.peers...)
	samples := make([][]float64, len(sides))
	for round := -1; round < cfg.rounds; round++ {
		for i, s := range sides {
			v, err := s.run(cfg)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			noteHist(m.name, s.name)
			if round >= 0 { // round -1 is the warm-up
				samples[i] = append(samples[i], v)
			}
		}
	}
	ours := median(samples[0])
	var rows []row
	for i, p := range m.peers {
		pv := median(samples[i+1])
		ratio := pv / ours
		if m.higher {
			ratio = ours / pv
		}
		rows = append(rows, row{m.name, m.unit, ours, p.name, pv, ratio})
	}
	return rows, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// sig3 formats x with three significant digits, trailing zeros kept and
// no exponent: 0.7689 is "0.769", 1 is "1.00", 1034 is "1030".
func sig3(x float64) string {
	if x == 0 || math.IsInf(x, 0) || math.IsNaN(x) {
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	e := int(math.Floor(math.Log10(math.Abs(x))))
	p := math.Pow(10, float64(2-e))
	r := math.Round(x*p) / p // 9.996 rounds up to 10.0: count its digits again
	e = int(math.Floor(math.Log10(math.Abs(r))))
	return strconv.FormatFloat(r, 'f', max(2-e, 0), 64)
}

func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "metric\tunit\tipckit\tpeer\tpeer value\tratio\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%sx\t\n", r.Metric, r.Unit, sig3(r.Ours), r.Peer, sig3(r.PeerValue), sig3(r.Ratio))
	}
	tw.Flush()
}

// timeOps runs f(n) with n doubling until one run lasts cfg.target, and
// returns the nanoseconds per operation of that run.
func timeOps(cfg *config, f func(n int) error) (float64, error) {
	n, d, err := untilTarget(cfg, 1, func(n int) (time.Duration, error) {
		start := time.Now()
		err := f(n)
		return time.Since(start), err
	})
	if err != nil {
		return 0, err
	}
	return float64(d.Nanoseconds()) / float64(n), nil
}

// untilTarget calls run(n) for n = n0, 2*n0, 4*n0, ... until run times a
// run of at least cfg.target, and returns that n and the time run gave: so
// that every throughput figure and its peer are timed over the same span,
// whatever work one operation is.
func untilTarget(cfg *config, n0 int, run func(n int) (time.Duration, error)) (int, time.Duration, error) {
	for n := max(n0, 1); ; n *= 2 {
		d, err := run(n)
		if err != nil || d >= cfg.target || n >= 1<<40 {
			return n, d, err
		}
	}
}
