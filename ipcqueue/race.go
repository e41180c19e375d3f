//go:build race

package ipcqueue

import (
	"runtime"
	"unsafe"
)

// raceAcquire and raceRelease tell the race detector about a lock it
// cannot see (see rlock.race).
func raceAcquire(p unsafe.Pointer) { runtime.RaceAcquire(p) }
func raceRelease(p unsafe.Pointer) { runtime.RaceReleaseMerge(p) }
