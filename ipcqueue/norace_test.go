//go:build !race

package ipcqueue

const raceEnabled = false
