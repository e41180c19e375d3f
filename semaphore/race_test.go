//go:build linux && race

package semaphore

// raceEnabled reports a -race build, whose runtime has periodic work of its
// own that idle-cost figures cannot tell from ours.
const raceEnabled = true
