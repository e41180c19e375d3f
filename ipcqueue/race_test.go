//go:build race

package ipcqueue

// raceEnabled reports a -race build, whose runtime has periodic work of its
// own that idle-cost tests cannot tell from the queue's.
const raceEnabled = true
