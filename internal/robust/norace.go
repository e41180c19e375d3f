//go:build !race

package robust

import "unsafe"

const raceEnabled = false

func newRaceAddr() unsafe.Pointer { return nil }
func raceAcquire(unsafe.Pointer)  {}
func raceRelease(unsafe.Pointer)  {}
