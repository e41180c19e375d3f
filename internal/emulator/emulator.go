// Package emulator tells tests whether their binary runs under an
// emulator (qemu-user), where timing figures measure the emulator and
// memory-ordering tests prove nothing about real hardware.
package emulator

import (
	"os"
	"runtime"
	"strings"
)

// Detected says why this binary is thought to run under an emulator, or
// "" if not: CI's emulated stage sets IPCKIT_EMULATED, and under qemu-user
// a binary reads the host's /proc/cpuinfo, so an arm64 binary that finds
// an x86 one there (or an x86 binary that finds another) is emulated too.
func Detected() string {
	if e := os.Getenv("IPCKIT_EMULATED"); e != "" {
		return "IPCKIT_EMULATED=" + e
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	x86Host := strings.Contains(string(b), "vendor_id")
	switch x86Binary := runtime.GOARCH == "amd64" || runtime.GOARCH == "386"; {
	case x86Host && !x86Binary:
		return runtime.GOARCH + " binary on an x86 host's /proc/cpuinfo"
	case !x86Host && x86Binary:
		return runtime.GOARCH + " binary on a non-x86 host's /proc/cpuinfo"
	}
	return ""
}
