//go:build race

package spawn

// raceEnabled: the race runtime sleeps a second before a successful exit
// (GORACE atexit_sleep_ms, default 1000), which children do not need.
const raceEnabled = true
