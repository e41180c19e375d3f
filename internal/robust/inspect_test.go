package robust

import (
	"errors"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/ipckit/ipckit/internal/sentinel"
)

// Peek reads a lock's word and sleepers as they are, whatever they hold,
// and writes neither.
func TestPeek(t *testing.T) {
	b := make([]byte, Size+8)
	for uintptr(unsafe.Pointer(&b[0]))%8 != 0 {
		b = b[1:]
	}
	l, err := At(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	word := (*atomic.Uint64)(unsafe.Pointer(&b[OffWord]))
	if s, err := PeekAt(b); err != nil || s != (LockState{}) {
		t.Fatalf("free lock: %+v, %v", s, err)
	}
	l.TryLockFree()
	if s, _ := PeekAt(b); s != (LockState{Holder: l.Token()}) {
		t.Fatalf("held lock: %+v, want holder %v", s, l.Token())
	}
	word.Store(uint64(l.Token()) | flagInconsistent)
	(*atomic.Uint32)(unsafe.Pointer(&b[OffSleepers])).Store(1)
	if s, _ := PeekAt(b); s != (LockState{Holder: l.Token(), Inconsistent: true, Sleepers: true}) {
		t.Fatalf("inconsistent lock with a sleeper: %+v", s)
	}
	word.Store(notRecoverable)
	if s, _ := PeekAt(b); s != (LockState{NotRecoverable: true, Sleepers: true}) {
		t.Fatalf("not recoverable lock: %+v", s)
	}
	word.Store(notRecoverable | 5)
	if _, err := PeekAt(b); !errors.Is(err, sentinel.ErrCorrupt) {
		t.Fatalf("impossible word: %v, want ErrCorrupt", err)
	}
	if w := word.Load(); w != notRecoverable|5 {
		t.Fatalf("Peek changed the word to %#x", w)
	}
	if _, err := PeekAt(b[1:]); err == nil {
		t.Fatal("PeekAt of a misaligned place succeeded")
	}
}
