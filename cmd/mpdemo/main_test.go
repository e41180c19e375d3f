package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// binary is the mpdemo program, built once for the tests, which run it as a
// user would.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mpdemo-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mpdemo")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs mpdemo with args and returns its stdout; it fails the test if
// the program fails or writes to stderr.
func run(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("mpdemo %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

func golden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "mpdemo", name+".golden"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGolden: the queue and pool demos print the tutorial's output exactly.
func TestGolden(t *testing.T) {
	for _, name := range []string{"queue", "pool"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got, want := run(t, name), golden(t, name); got != want {
				t.Fatalf("mpdemo %s printed\n%s\nwant\n%s", name, got, want)
			}
		})
	}
}

// The pool demo on a cluster (an embedded server) prints the same lines.
func TestGoldenCluster(t *testing.T) {
	if got, want := run(t, "pool", "-cluster"), golden(t, "pool"); got != want {
		t.Fatalf("mpdemo pool -cluster printed\n%s\nwant\n%s", got, want)
	}
}

// The goroutine and the child process run side by side: either may print
// first.
func TestBasic(t *testing.T) {
	got := strings.Split(strings.TrimSpace(run(t, "basic")), "\n")
	want := strings.Split(strings.TrimSpace(golden(t, "basic")), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("basic printed %q, want the lines %q in any order", got, want)
	}
}

// TestCostTime: costtime prints the three sums (right for -n too), three
// timings, a conclusion that names the fastest, and the two notes.
func TestCostTime(t *testing.T) {
	for _, c := range []struct {
		args []string
		sum  string
	}{
		{[]string{"costtime"}, "499999666667166666000000"},
		{[]string{"-n", "1000", "costtime"}, "499667166000"},
	} {
		out := run(t, c.args...)
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if len(lines) != 9 {
			t.Fatalf("costtime printed %d lines, want 9:\n%s", len(lines), out)
		}
		timeLine := regexp.MustCompile(`^cost time : [0-9]+\.[0-9]{6}$`)
		for i, name := range []string{"normal", "multithread", "multicore"} {
			if want := name + ": " + c.sum; lines[2*i] != want {
				t.Errorf("line %d = %q, want %q", 2*i+1, lines[2*i], want)
			}
			if !timeLine.MatchString(lines[2*i+1]) {
				t.Errorf("line %d = %q, want %q", 2*i+2, lines[2*i+1], timeLine)
			}
		}
		conclusion := regexp.MustCompile(`^conclusion: (normal|multithread|multicore) was fastest(; [0-9.]+x faster than (normal|multithread|multicore)){2}\.$`)
		if !conclusion.MatchString(lines[6]) {
			t.Errorf("conclusion %q does not match %q", lines[6], conclusion)
		}
		if !strings.Contains(lines[7], "GIL") || !strings.Contains(lines[8], "start") {
			t.Errorf("the two lines on Go and Python are missing:\n%s", strings.Join(lines[7:], "\n"))
		}
	}
}

// splits reports whether s can be cut into exactly n numbers, each in
// [lo, hi], without leading zeros, in a way that ok accepts (any way, if ok
// is nil).
func splits(s string, n, lo, hi int, ok func(values []int) bool) bool {
	var cut func(s string, values []int) bool
	cut = func(s string, values []int) bool {
		if s == "" || len(values) == n {
			return s == "" && len(values) == n && (ok == nil || ok(values))
		}
		for k := 1; k <= len(s) && k <= len(strconv.Itoa(hi)); k++ {
			if s[0] == '0' && k > 1 {
				break
			}
			v, _ := strconv.Atoi(s[:k])
			if v >= lo && v <= hi && cut(s[k:], append(values, v)) {
				return true
			}
		}
		return false
	}
	return cut(s, nil)
}

// TestSplits: splits finds a cut into ten values when there is one, and
// only one that ok accepts.
func TestSplits(t *testing.T) {
	for s, want := range map[string]bool{
		"145891213161720":   true,
		"1234581114171920":  true,
		"369121":            false, // too few digits for ten values
		"99999999999999999": false,
	} {
		if got := splits(s, 10, 1, 20, nil); got != want {
			t.Errorf("splits(%q) = %v, want %v", s, got, want)
		}
	}
	has := func(x int) func([]int) bool { return func(vs []int) bool { return slices.Contains(vs, x) } }
	if !splits("11111111111", 10, 1, 20, has(11)) || splits("11111111111", 10, 1, 20, has(2)) {
		t.Errorf("splits of eleven 1s: want nine 1s and an 11, which has no 2")
	}
}

// TestRace: without the lock and with the tutorial's timing, the demo
// prints one line of ten running values with no separators, each between 1
// and 20. An unsynchronized race promises little more (a lost update can
// even make the value go down, in what either process prints), so that is
// all this test asks; TestRaceWindow shows that the updates do race.
func TestRace(t *testing.T) {
	out := run(t, "race")
	if !regexp.MustCompile(`^[0-9]+\n$`).MatchString(out) {
		t.Fatalf("race printed %q, want one line of digits", out)
	}
	if !splits(strings.TrimSpace(out), 10, 1, 20, nil) {
		t.Fatalf("race printed %q, which is not ten values between 1 and 20", out)
	}
}

// TestRaceWindow: with -window longer than the 100 ms pause, the two
// processes, started together, hold their reads at the same time, and
// updates are lost: the total falls short of 20. The total is the value
// last written, which its writer then read and printed, so it is one of the
// ten values: that fails if the processes do not share the value.
func TestRaceWindow(t *testing.T) {
	out := run(t, "-window", "200ms", "race")
	m := regexp.MustCompile(`^([0-9]+)\ntotal ([0-9]+) of 20: .*\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("race -window 200ms printed %q, want a line of values and the total", out)
	}
	total, _ := strconv.Atoi(m[2])
	if total >= 20 {
		t.Fatalf("race -window 200ms printed %q: no update was lost", out)
	}
	if !splits(m[1], 10, 1, 20, func(vs []int) bool { return slices.Contains(vs, total) }) {
		t.Fatalf("race -window 200ms printed %q: not ten values between 1 and 20, one of them the total %d", out, total)
	}
}

// TestLock: with the lock around each process's loop, one process makes
// all its updates, then the other: none is lost, even with a window that
// makes the race lose some.
func TestLock(t *testing.T) {
	a := "1\n2\n3\n4\n5\n8\n11\n14\n17\n20\n"
	b := "3\n6\n9\n12\n15\n16\n17\n18\n19\n20\n"
	for _, c := range []struct {
		args []string
		tail string
	}{
		{[]string{"lock"}, ""},
		{[]string{"-window", "20ms", "lock"}, "total 20 of 20: no update was lost (-window 20ms)\n"},
	} {
		if got := run(t, c.args...); got != a+c.tail && got != b+c.tail {
			t.Fatalf("mpdemo %v printed\n%s\nwant one of\n%s\n%s", c.args, got, a+c.tail, b+c.tail)
		}
	}
}

// Run with no name, mpdemo runs every demo in the tutorial's order, each
// under a heading.
func TestAll(t *testing.T) {
	out := run(t)
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^== ([a-z]+): `).FindAllStringSubmatch(out, -1) {
		names = append(names, m[1])
	}
	want := []string{"basic", "queue", "costtime", "pool", "race", "lock"}
	if !slices.Equal(names, want) {
		t.Fatalf("headings %v, want %v", names, want)
	}
	if !strings.Contains(out, golden(t, "queue")) || !strings.Contains(out, golden(t, "pool")) {
		t.Fatalf("the full run lacks a demo's output:\n%s", out)
	}
}

// TestUsage: -h lists every demo, and an unknown name exits 2 saying so.
func TestUsage(t *testing.T) {
	out, err := exec.Command(binary, "-h").CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	for _, d := range demos {
		if !strings.Contains(string(out), d.name+" ") || !strings.Contains(string(out), d.about) {
			t.Errorf("-h does not list %s:\n%s", d.name, out)
		}
	}
	out, err = exec.Command(binary, "nosuch").CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), `no demo named "nosuch"`) {
		t.Fatalf("an unknown name: %v\n%s", err, out)
	}
}
