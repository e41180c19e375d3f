//go:build linux

package robust_test

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/internal/sentinel"
)

// A Lock over memory that other processes map too (here a heap buffer,
// as tests under the race detector use). Zeroed memory is a free lock.
func ExampleLock() {
	mem := make([]uint64, robust.Size/8) // 8-byte aligned
	l, err := robust.At(unsafe.Slice((*byte)(unsafe.Pointer(&mem[0])), robust.Size), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	switch err := l.Lock(context.Background()); {
	case errors.Is(err, sentinel.ErrOwnerDead):
		// The previous holder died holding the lock: repair what it
		// guards, then say so.
		l.MarkConsistent()
	case err != nil:
		fmt.Println(err)
		return
	}
	fmt.Println("locked by this process:", func() bool { h, _ := l.Holder(); return h == l.Token() }())
	if err := l.Unlock(); err != nil {
		fmt.Println(err)
	}
	fmt.Println(l.Unlock())
	// Output:
	// locked by this process: true
	// ipckit: lock is not held
}
