package robust

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/ipckit/ipckit/internal/liveness"
)

// LockState is a snapshot of a lock's words, read by [Peek] without a
// handle: what an inspector shows. The zero LockState is a free lock with
// no sleeper.
type LockState struct {
	Holder         liveness.Token // 0 if free or not recoverable
	Inconsistent   bool           // taken over from a dead holder, not yet marked consistent
	NotRecoverable bool           // unlocked while inconsistent: terminal
	Sleepers       bool           // a locker announced itself asleep (bit 0 of the sleepers word)
}

// Peek reads the lock whose words are word and sleepers with two atomic
// loads and nothing else: no liveness token is claimed, no word is
// written, so they may lie in a read-only mapping. An impossible lock word
// is an error wrapping sentinel.ErrCorrupt.
func Peek(word *atomic.Uint64, sleepers *atomic.Uint32) (LockState, error) {
	w, fx := word.Load(), sleepers.Load()
	if !valid(w) {
		return LockState{}, corrupt(w)
	}
	s := LockState{Sleepers: fx&1 != 0}
	switch {
	case w == notRecoverable:
		s.NotRecoverable = true
	case w != 0:
		s.Holder = liveness.Token(w & tokenMask)
		s.Inconsistent = w&flagInconsistent != 0
	}
	return s, nil
}

// PeekAt is [Peek] of the lock held in b[:Size], placed as [At] places one
// (8-byte aligned); a place that cannot hold one wraps os.ErrInvalid.
func PeekAt(b []byte) (LockState, error) {
	if len(b) < Size || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%8 != 0 {
		return LockState{}, fmt.Errorf("robust: %d bytes at a misaligned or short place cannot hold a lock: %w", len(b), os.ErrInvalid)
	}
	return Peek((*atomic.Uint64)(unsafe.Pointer(&b[OffWord])), (*atomic.Uint32)(unsafe.Pointer(&b[OffSleepers])))
}
