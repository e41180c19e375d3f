// Command mpdemo replays, in Go, the programs of a well-known Chinese
// tutorial on Python's multiprocessing, and prints what they print.
//
// Usage:
//
//	go run ./cmd/mpdemo            # all six demos, in the tutorial's order
//	go run ./cmd/mpdemo NAME ...   # only these
//	go run ./cmd/mpdemo -h         # the names, a line each
//	go run ./cmd/mpdemo -window 200ms race   # a race wide enough to lose updates
//	go run ./cmd/mpdemo pool -cluster        # the pool demo on a NATS JetStream cluster
//
// Each demo is short and uses only ipckit's public API, so it doubles as an
// example to copy.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"

	"github.com/ipckit/ipckit/spawn"
)

// demo is one of the tutorial's programs.
type demo struct {
	name, about string
	run         func(ctx context.Context) error
}

// demos lists the programs in the tutorial's order.
var demos = []demo{
	{"basic", "a goroutine and a child process side by side (Thread vs Process)", basic},
	{"queue", "two child processes put their results on a shared queue", queueDemo},
	{"costtime", "the same job serially, in two goroutines and in two processes, timed", costTime},
	{"pool", "a pool of 3 processes: Map, then Go (apply_async)", poolDemo},
	{"race", "two processes add to a shared int32 without a lock: their updates interleave unsynchronized", race},
	{"lock", "the same with a process lock around each process's loop", lockDemo},
}

func main() {
	spawn.Main() // first: in a child process, this runs the registered function and exits
	flag.Usage = usage
	flag.IntVar(&costN, "n", costN, "costtime: the job's range (the work scales with it)")
	flag.DurationVar(&raceWindow, "window", 0, "race, lock: start both processes together and hold each value read this long before writing\nthe sum back, so that race's updates overlap and some are lost (lock's are not)")
	flag.Parse()

	selected, err := choose(namesAndFlags(flag.Args()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mpdemo:", err)
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *serveURL != "" {
		if err := serveOnly(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "mpdemo: -serve:", err)
			os.Exit(1)
		}
		return
	}
	for i, d := range selected {
		if len(selected) > 1 {
			if i > 0 {
				fmt.Println()
			}
			fmt.Printf("== %s: %s\n", d.name, d.about)
		}
		if err := d.run(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "mpdemo: %s: %v\n", d.name, err)
			os.Exit(1)
		}
	}
}

func choose(names []string) ([]demo, error) {
	if len(names) == 0 {
		return demos, nil
	}
	var out []demo
	for _, n := range names {
		i := slices.IndexFunc(demos, func(d demo) bool { return d.name == n })
		if i < 0 {
			return nil, fmt.Errorf("no demo named %q", n)
		}
		out = append(out, demos[i])
	}
	return out, nil
}

// namesAndFlags returns the demo names in args, parsing the flags among
// them: mpdemo pool -cluster is mpdemo -cluster pool.
func namesAndFlags(args []string) []string {
	var names []string
	for len(args) > 0 {
		if !strings.HasPrefix(args[0], "-") {
			names, args = append(names, args[0]), args[1:]
			continue
		}
		flag.CommandLine.Parse(args) // exits on a bad flag
		args = flag.Args()
	}
	return names
}

func usage() {
	w := flag.CommandLine.Output()
	fmt.Fprintln(w, "usage: mpdemo [-n N] [-window D] [-cluster [-nats URL | -serve URL]] [NAME ...]\n\nThe demos, run in this order when no NAME is given:")
	for _, d := range demos {
		fmt.Fprintf(w, "  %-9s %s\n", d.name, d.about)
	}
	fmt.Fprintln(w, "\nFlags:")
	flag.PrintDefaults()
}
