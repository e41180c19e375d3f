package codec

import (
	"errors"
	"testing"

	"github.com/ipckit/ipckit/internal/sentinel"
)

type flags struct {
	N uint32
	B [3]bool
}

type rec struct {
	S string
	P *rec
}

// FuzzDecode: any bytes, as a gob message or as a fixed-size one, decode
// to a value or to an error wrapping ErrCorrupt; never a panic.
func FuzzDecode(f *testing.F) {
	g := For[*rec]("test")
	ok, _ := g.EncodeGob(&rec{S: "x", P: &rec{}})
	f.Add(ok)
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 1, 2, 0, 0})
	fx := For[flags]("test")
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := g.DecodeGob(b); err != nil && !errors.Is(err, sentinel.ErrCorrupt) {
			t.Fatalf("DecodeGob: %v, not ErrCorrupt", err)
		}
		var v flags
		copy(Bytes(&v), b)
		err := fx.CheckFixed(&v, len(b))
		bad := len(b) != fx.Size()
		for _, x := range Bytes(&v)[4:7] {
			bad = bad || x > 1
		}
		if (err == nil) == bad {
			t.Fatalf("CheckFixed(%x) = %v", b, err)
		}
	})
}

// TestCodec: the fixed codec is chosen for pointer-free types only; a
// bool byte other than 0 or 1 and a wrong length are ErrCorrupt.
func TestCodec(t *testing.T) {
	if c := For[flags]("test"); !c.Fixed() || c.Size() != 8 {
		t.Fatalf("flags: fixed %v, size %d", c.Fixed(), c.Size())
	}
	if c := For[rec]("test"); c.Fixed() {
		t.Fatal("a struct with a string uses the fixed codec")
	}
	if c := For[[65]bool]("test"); c.Fixed() {
		t.Fatal("65 bools use the fixed codec")
	}
	c := For[flags]("test")
	v := flags{N: 1}
	Bytes(&v)[5] = 2
	if err := c.CheckFixed(&v, 8); !errors.Is(err, sentinel.ErrCorrupt) {
		t.Fatalf("a bool byte of 2 = %v", err)
	}
	if err := c.CheckFixed(&flags{}, 7); !errors.Is(err, sentinel.ErrCorrupt) {
		t.Fatalf("7 bytes for flags = %v", err)
	}
}
