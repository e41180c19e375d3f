package main

import (
	"context"
	"fmt"
	"time"
)

// costN is the range of the costtime demo's job (flag -n).
var costN = 1_000_000

// costTime is the tutorial's timing comparison: the job done twice,
// serially, in two goroutines and in two processes.
func costTime(ctx context.Context) error {
	n := costN
	if n < 0 || n > maxJobN {
		return fmt.Errorf("-n %d: want 0 to %d", n, maxJobN)
	}
	var times [3]time.Duration

	start := time.Now()
	res := job(n).plus(job(n))
	times[0] = time.Since(start)
	fmt.Println("normal:", res)
	fmt.Println("cost time :", seconds(times[0]))

	start = time.Now()
	res = twoGoroutines(n)
	times[1] = time.Since(start)
	fmt.Println("multithread:", res)
	fmt.Println("cost time :", seconds(times[1]))

	start = time.Now()
	r1, r2, err := twoProcesses(ctx, n)
	if err != nil {
		return err
	}
	times[2] = time.Since(start)
	fmt.Println("multicore:", r1.plus(r2))
	fmt.Println("cost time :", seconds(times[2]))

	fmt.Println(conclusion(times))
	fmt.Println("Go has no GIL: goroutines run on all cores at once, so \"multithread\" speeds up too, unlike Python's threads.")
	fmt.Println("Processes pay to start (a fresh copy of the program), so they win only when the work outweighs that cost.")
	return nil
}

// twoGoroutines is Python's two threads: the job twice, at once.
func twoGoroutines(n int) sum128 {
	results := make(chan sum128, 2)
	for range 2 {
		go func() { results <- job(n) }()
	}
	return (<-results).plus(<-results)
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.6f", d.Seconds()) }

// conclusion ranks the three ways by their measured times.
func conclusion(t [3]time.Duration) string {
	names := [3]string{"normal", "multithread", "multicore"}
	best := 0
	for i := range t {
		if t[i] < t[best] {
			best = i
		}
	}
	s := fmt.Sprintf("conclusion: %s was fastest", names[best])
	for i := range t {
		if i != best {
			s += fmt.Sprintf("; %.2fx faster than %s", float64(t[i])/float64(max(t[best], 1)), names[i])
		}
	}
	return s + "."
}
