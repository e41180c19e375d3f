//go:build linux

package ipcqueue

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
)

// membarrier(2) commands (linux/membarrier.h).
const (
	mbQuery                    = 0
	mbPrivateExpedited         = 1 << 3
	mbRegisterPrivateExpedited = 1 << 4
)

// sysMembarrier is membarrier's system call number on the architectures
// ipckit supports (the syscall package predates it), 0 elsewhere.
var sysMembarrier = map[string]uintptr{"amd64": 324, "arm64": 283}[runtime.GOARCH]

// haveMembarrier reports whether the kernel offers
// MEMBARRIER_CMD_PRIVATE_EXPEDITED, asked once per process (a few
// microseconds): it decides, for every handle, whether a pinned call's
// entry store needs to be a full fence (guard.go).
var haveMembarrier = sync.OnceValue(func() bool {
	if sysMembarrier == 0 {
		return false
	}
	const want = mbPrivateExpedited | mbRegisterPrivateExpedited
	r, _, errno := syscall.Syscall(sysMembarrier, mbQuery, 0, 0)
	return errno == 0 && r&want == want
})

// registerMembarrier registers the process for
// MEMBARRIER_CMD_PRIVATE_EXPEDITED, once, at its first Close: it may wait
// for an RCU grace period (milliseconds), which no process that never
// closes a handle should pay.
var registerMembarrier = sync.OnceValue(func() error {
	if _, _, errno := syscall.Syscall(sysMembarrier, mbRegisterPrivateExpedited, 0, 0); errno != 0 {
		return fmt.Errorf("ipcqueue: close: %w", os.NewSyscallError("membarrier", errno))
	}
	return nil
})

// membarrier runs a full memory barrier on every running thread of this
// process before it returns.
func membarrier() error {
	if err := registerMembarrier(); err != nil {
		return err
	}
	if _, _, errno := syscall.Syscall(sysMembarrier, mbPrivateExpedited, 0, 0); errno != 0 {
		return fmt.Errorf("ipcqueue: close: %w", os.NewSyscallError("membarrier", errno))
	}
	return nil
}
