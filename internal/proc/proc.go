// Package proc identifies processes by pid plus start time, so that a pid
// reused by the kernel is never mistaken for the process that held it.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
)

// ErrUnknown is returned when a process's start time cannot be read.
var ErrUnknown = errors.New("proc: process start time unknown")

// ID names one process for its whole life: its pid and its start time in
// clock ticks since boot (field 22 of /proc/PID/stat). The zero ID names no
// process.
type ID struct {
	Pid   uint32
	Start uint64
}

// Self returns the ID of the calling process.
var Self = sync.OnceValue(func() ID {
	id, err := Lookup(os.Getpid())
	if err != nil {
		// /proc is missing: fall back to the pid alone.
		id = ID{Pid: uint32(os.Getpid())}
	}
	return id
})

// Lookup returns the ID of the live process pid.
func Lookup(pid int) (ID, error) {
	start, err := startTime(pid)
	if err != nil {
		return ID{}, err
	}
	return ID{Pid: uint32(pid), Start: start}, nil
}

// Alive reports whether the process id names is still running (a zombie
// counts as dead). A pid now used by another process is reported dead.
func Alive(id ID) bool {
	if id.Pid == 0 {
		return false
	}
	start, err := startTime(int(id.Pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist) && !errors.Is(err, errZombie)
	}
	return id.Start == 0 || start == id.Start
}

var errZombie = errors.New("proc: zombie")

// startTime reads the start time of pid from /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself: the fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: malformed /proc/%d/stat", ErrUnknown, pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), so field 22 (starttime) is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("%w: short /proc/%d/stat", ErrUnknown, pid)
	}
	if f[0][0] == 'Z' || f[0][0] == 'X' {
		return 0, errZombie
	}
	return strconv.ParseUint(string(f[19]), 10, 64)
}
