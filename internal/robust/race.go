//go:build race

package robust

import (
	"runtime"
	"unsafe"
)

// raceEnabled reports a -race build (whose runtime has its own periodic
// work, which idle-cost tests cannot tell from ours).
const raceEnabled = true

// newRaceAddr returns a Go-heap address standing for a lock under the
// race detector, which does not see atomics on a mapping as
// synchronization; raceAcquire and raceRelease tell it about the lock.
func newRaceAddr() unsafe.Pointer  { return unsafe.Pointer(new(uint64)) }
func raceAcquire(p unsafe.Pointer) { runtime.RaceAcquire(p) }
func raceRelease(p unsafe.Pointer) { runtime.RaceReleaseMerge(p) }
