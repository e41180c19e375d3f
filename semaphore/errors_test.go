//go:build linux

package semaphore

import (
	"bytes"
	"encoding/gob"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
)

// TestArgumentErrors checks that every bad argument is an error that wraps
// os.ErrInvalid, names the bad value, and carries the package prefix once;
// and that a named constructor refusing its arguments leaves no segment.
func TestArgumentErrors(t *testing.T) {
	seg, err := shm.NewHeap(4096)
	if err != nil {
		t.Fatal(err)
	}
	name := helperproc.Name(t)
	t.Cleanup(func() { shm.Remove(name) })
	call := func(_ any, err error) error { return err }
	for _, tc := range []struct {
		name string
		err  error
		want string // the bad value, as the message must show it
	}{
		{"barrier-0-parties", call(NewBarrier(0)), "0 parties"},
		{"barrier-too-many-parties", call(NewBarrier(maxParties + 1)), "65537 parties"},
		{"barrier-at-negative-parties", call(InitBarrierAt(seg, 0, -1)), "-1 parties"},
		{"create-barrier-0-parties", call(CreateBarrier(name, 0, nil)), "0 parties"},
		{"semaphore-negative-value", call(NewSemaphore(-1, nil)), "value -1"},
		{"semaphore-value-too-large", call(NewSemaphore(maxSemaphore+1, nil)), "value 2147483648"},
		{"semaphore-negative-holders", call(NewSemaphore(1, &SemaphoreOptions{Holders: -1})), "-1 holders"},
		{"semaphore-too-many-holders", call(NewSemaphore(1, &SemaphoreOptions{Holders: maxHolders + 1})), "65537 holders"},
		{"semaphore-at-negative-value", call(InitSemaphoreAt(seg, 0, -2, nil)), "value -2"},
		{"create-semaphore-negative-value", call(CreateSemaphore(name, -1, nil)), "value -1"},
		{"misaligned-offset", call(MutexAt(seg, 4)), "offset 4"},
		{"negative-offset", call(EventAt(seg, -8)), "offset -8"},
		{"offset-past-the-end", call(MutexAt(seg, 4096)), "offset 4096"},
		{"object-does-not-fit", call(InitSemaphoreAt(seg, 4032, 1, nil)), "offset 4032"},
		{"nil-segment", call(BarrierAt(nil, 0)), "nil segment"},
		{"short-lock-record", call(fileRecordAt(make([]byte, 8))), "8 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, os.ErrInvalid) {
				t.Fatalf("err = %v, want os.ErrInvalid", tc.err)
			}
			msg := tc.err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("%q does not name the bad value (%q)", msg, tc.want)
			}
			if n := strings.Count(msg, "semaphore:"); n > 1 {
				t.Errorf("%q: package prefix %d times", msg, n)
			}
		})
	}
	if _, err := os.Stat(filepath.Join("/dev/shm", name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a named constructor that refused its arguments left a file: %v", err)
	}
	if _, err := shm.Open(name); err == nil {
		t.Error("a named constructor that refused its arguments left a segment")
	}
}

// TestHandleWithoutSegment decodes a handle that names no segment: a bad
// argument, not a panic.
func TestHandleWithoutSegment(t *testing.T) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(wire{Off: 8}); err != nil {
		t.Fatal(err)
	}
	var m Mutex
	if err := m.GobDecode(buf.Bytes()); !errors.Is(err, os.ErrInvalid) {
		t.Fatalf("GobDecode of a handle without a segment = %v", err)
	}
}

// TestFileMutexNotRegular opens a FIFO as a lock file: it is not one, a bad
// argument.
func TestFileMutexNotRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	m, err := NewFileMutex(fifo)
	if err == nil {
		m.Close()
		t.Fatal("NewFileMutex opened a FIFO")
	}
	if !errors.Is(err, os.ErrInvalid) || strings.Count(err.Error(), "semaphore:") != 1 {
		t.Fatalf("NewFileMutex of a FIFO = %v, want os.ErrInvalid, prefixed once", err)
	}
}
