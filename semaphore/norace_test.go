//go:build linux && !race

package semaphore

const raceEnabled = false
