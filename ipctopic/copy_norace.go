//go:build !race

package ipctopic

const raceEnabled = false

// copyIn writes msg at the start of a slot's payload p.
func copyIn(p, msg []byte) { copy(p, msg) }

// copyOut copies a slot's payload p (already cut to the message's length)
// into dst.
func copyOut(dst, p []byte) { copy(dst, p) }
