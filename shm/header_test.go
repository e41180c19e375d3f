//go:build linux

package shm

import (
	"encoding/binary"
	"errors"
	"os"
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
		{"Param", unsafe.Offsetof(h.Param), 40},
		{"Checksum", unsafe.Offsetof(h.Checksum), offChecksum},
		{"State", unsafe.Offsetof(h.State), offState},
		{"sizeof", unsafe.Sizeof(h), headerSize},
	} {
		if c.got != c.want {
			t.Errorf("%s at %d, want %d", c.name, c.got, c.want)
		}
	}
	if offState%4 != 0 || headerSize%64 != 0 {
		t.Error("state word or payload misaligned")
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
		{"magic", flip(0), ErrBadMagic},
		{"version", flip(4), ErrVersion},
		{"kind unknown", flip(7), ErrKind},
		{"kind other", resum(func(b []byte) { le.PutUint16(b[6:], uint16(KindQueue)) }), ErrKind},
		{"size field", flip(8), ErrChecksum},
		{"payload field", flip(16), ErrChecksum},
		{"pid", flip(24), ErrChecksum},
		{"param", flip(40), ErrChecksum},
		{"checksum", flip(offChecksum), ErrChecksum},
		{"size resummed", resum(func(b []byte) { le.PutUint64(b[8:], 1<<20) }), ErrSize},
		{"payload resummed", resum(func(b []byte) { le.PutUint64(b[16:], 8) }), ErrSize},
		{"state", func(b []byte) []byte { le.PutUint32(b[offState:], 7); return b }, ErrNotReady},
		{"file truncated", func(b []byte) []byte { return b[:40] }, ErrSize},
		{"file shortened", func(b []byte) []byte { return b[:100] }, ErrSize},
		{"file extended", func(b []byte) []byte { return append(b, 0) }, ErrSize},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if err := corrupt(t, c.edit); !errors.Is(err, c.want) {
				t.Fatalf("Open = %v, want %v", err, c.want)
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
