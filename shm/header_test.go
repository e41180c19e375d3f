//go:build linux

package shm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/ipckit/ipckit/internal/helperproc"
)

func TestHeaderLayout(t *testing.T) {
	var h header
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"Magic", unsafe.Offsetof(h.Magic), 0},
		{"Version", unsafe.Offsetof(h.Version), 4},
		{"Kind", unsafe.Offsetof(h.Kind), 6},
		{"Size", unsafe.Offsetof(h.Size), 8},
		{"Payload", unsafe.Offsetof(h.Payload), 16},
		{"Pid", unsafe.Offsetof(h.Pid), 24},
		{"Started", unsafe.Offsetof(h.Started), 32},
		{"Checksum", unsafe.Offsetof(h.Checksum), 48},
		{"State", unsafe.Offsetof(h.State), 52},
		{"sizeof", unsafe.Sizeof(h), headerSize},
		// The named offsets the encoder uses are the struct's.
		{"offMagic", offMagic, unsafe.Offsetof(h.Magic)},
		{"offVersion", offVersion, unsafe.Offsetof(h.Version)},
		{"offKind", offKind, unsafe.Offsetof(h.Kind)},
		{"offSize", offSize, unsafe.Offsetof(h.Size)},
		{"offPayload", offPayload, unsafe.Offsetof(h.Payload)},
		{"offPid", offPid, unsafe.Offsetof(h.Pid)},
		{"offStarted", offStarted, unsafe.Offsetof(h.Started)},
		{"offChecksum", offChecksum, unsafe.Offsetof(h.Checksum)},
		{"offState", offState, unsafe.Offsetof(h.State)},
		// The reserved words fill the gaps between the fields.
		{"offReserved0", offReserved0, unsafe.Offsetof(h.Pid) + unsafe.Sizeof(h.Pid)},
		{"offReserved1", offReserved1, unsafe.Offsetof(h.Started) + unsafe.Sizeof(h.Started)},
		{"offReserved2", offReserved2, unsafe.Offsetof(h.State) + unsafe.Sizeof(h.State)},
	} {
		if c.got != c.want {
			t.Errorf("%s at %d, want %d", c.name, c.got, c.want)
		}
	}
	if offState%4 != 0 || headerSize%64 != 0 {
		t.Error("state word or payload misaligned")
	}
}

// The reserved bytes (28..32, 40..48, 56..64) are written as zeros, over
// whatever the memory held, and nothing else writes them.
func TestHeaderReserved(t *testing.T) {
	b := bytes.Repeat([]byte{0xff}, headerSize)
	encodeHeader(b, &header{Magic: magic, Version: version, Kind: KindBytes, Size: headerSize, Payload: headerSize,
		Pid: 1<<32 - 1, Started: 1<<64 - 1})
	for _, r := range []struct{ off, n int }{{offReserved0, 4}, {offReserved1, 8}, {offReserved2, 8}} {
		if got := b[r.off : r.off+r.n]; !bytes.Equal(got, make([]byte, r.n)) {
			t.Errorf("reserved bytes at %d = %x, want zeros", r.off, got)
		}
	}
	s, err := KindInt64.NewHeap(8)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.mem[offReserved1 : offReserved1+8]; !bytes.Equal(got, make([]byte, 8)) {
		t.Errorf("a new segment's reserved bytes at %d = %x", offReserved1, got)
	}
}

// ErrBadMagic, ErrChecksum and ErrSize are kinds of ErrCorrupt; the other
// header errors are not. Each is still itself, and a message says "shm:"
// once however it is wrapped.
func TestCorruptSentinels(t *testing.T) {
	for _, c := range []struct {
		err     error
		corrupt bool
	}{
		{ErrBadMagic, true}, {ErrChecksum, true}, {ErrSize, true},
		{ErrVersion, false}, {ErrKind, false}, {ErrNotReady, false},
	} {
		wrapped := &opError{op: `open "x"`, err: fmt.Errorf("%w: detail", c.err)}
		if !errors.Is(wrapped, c.err) {
			t.Errorf("%v: errors.Is(wrapped, itself) is false", c.err)
		}
		if got := errors.Is(wrapped, ErrCorrupt); got != c.corrupt {
			t.Errorf("errors.Is(%v, ErrCorrupt) = %v, want %v", c.err, got, c.corrupt)
		}
		if msg := wrapped.Error(); strings.Count(msg, "shm:") != 1 || !strings.HasPrefix(msg, `shm: open "x": `) {
			t.Errorf("message %q, want one shm: prefix, first", msg)
		}
	}
	if errors.Is(ErrBadMagic, ErrChecksum) || errors.Is(ErrCorrupt, ErrSize) {
		t.Error("distinct sentinels match each other")
	}
}

// corrupt creates a named segment, applies edit to its file's bytes, and
// returns what Open says of it.
func corrupt(t *testing.T, edit func(b []byte) []byte) error {
	t.Helper()
	name := helperproc.Name(t)
	s, err := KindInt64Array.Create(name, 128, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	t.Cleanup(func() { Remove(name) })
	b, err := os.ReadFile(Path(name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(Path(name), edit(b), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = KindInt64Array.Open(name)
	if err == nil {
		s.Close()
	}
	return err
}

func TestCorruptHeader(t *testing.T) {
	le := binary.LittleEndian
	flip := func(off int) func([]byte) []byte {
		return func(b []byte) []byte { b[off] ^= 0x40; return b }
	}
	// resum rewrites a field and then the checksum, so only the field is wrong.
	resum := func(edit func([]byte)) func([]byte) []byte {
		return func(b []byte) []byte {
			edit(b)
			le.PutUint32(b[offChecksum:], checksum(b))
			return b
		}
	}
	for _, c := range []struct {
		name string
		edit func([]byte) []byte
		want error
	}{
		{"magic", flip(offMagic), ErrBadMagic},
		{"version", flip(offVersion), ErrVersion},
		{"kind unknown", flip(offKind + 1), ErrKind},
		{"kind other", resum(func(b []byte) { le.PutUint16(b[offKind:], uint16(KindQueue)) }), ErrKind},
		{"size field", flip(offSize), ErrChecksum},
		{"payload field", flip(offPayload), ErrChecksum},
		{"pid", flip(offPid), ErrChecksum},
		{"reserved", flip(offReserved1), ErrChecksum},
		{"checksum", flip(offChecksum), ErrChecksum},
		{"size resummed", resum(func(b []byte) { le.PutUint64(b[offSize:], 1<<20) }), ErrSize},
		{"payload resummed", resum(func(b []byte) { le.PutUint64(b[offPayload:], 8) }), ErrSize},
		{"state", func(b []byte) []byte { le.PutUint32(b[offState:], 7); return b }, ErrNotReady},
		{"file truncated", func(b []byte) []byte { return b[:40] }, ErrSize},
		{"file shortened", func(b []byte) []byte { return b[:100] }, ErrSize},
		{"file extended", func(b []byte) []byte { return append(b, 0) }, ErrSize},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := corrupt(t, c.edit)
			if !errors.Is(err, c.want) {
				t.Fatalf("Open = %v, want %v", err, c.want)
			}
			if strings.Count(err.Error(), "shm:") != 1 {
				t.Errorf("Open = %q: the prefix is not there once", err)
			}
		})
	}
}

func FuzzValidate(f *testing.F) {
	good := make([]byte, headerSize+16)
	encodeHeader(good, &header{Magic: magic, Version: version, Kind: KindBytes, Size: uint64(len(good)), Payload: headerSize})
	binary.LittleEndian.PutUint32(good[offState:], stateReady)
	f.Add(good)
	f.Add(good[:10])
	f.Add(make([]byte, 200))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := validate(b, KindAny)
		if err != nil {
			return
		}
		if h.Size != uint64(len(b)) || h.Payload != headerSize || h.Magic != magic || !h.Kind.valid() {
			t.Fatalf("accepted impossible header %+v for %d bytes", h, len(b))
		}
	})
}
