//go:build linux

package shm

import (
	"errors"
	"os"
	"testing"

	"github.com/ipckit/ipckit/internal/emulator"
)

// TestGuardTruncated: a read and a write past the new end of a segment that
// was truncated under its mapping are ErrFault, on real hardware (SIGBUS with
// its address) and under qemu-user (SIGBUS with address 0) alike.
func TestGuardTruncated(t *testing.T) {
	s := create(t, 1<<16, nil)
	if err := os.Truncate(Path(s.Name()), 0); err != nil {
		t.Fatal(err)
	}
	var sink byte
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"read", func() { sink = s.Bytes()[1<<15] }},
		{"write", func() { s.Bytes()[1<<15] = 1 }},
	} {
		err := Guard(c.f)
		if !errors.Is(err, ErrFault) {
			t.Fatalf("%s past the end: Guard = %v, want ErrFault", c.name, err)
		}
		t.Logf("%s: %v", c.name, err)
	}
	_ = sink
}

// TestGuardNilDeref: a nil dereference inside f is not a fault on shared
// memory, and passes through Guard as the runtime's panic wherever the
// platform reports a SIGBUS's address. Where it does not (qemu-user), the two
// panic with the same value, and Guard reports ErrFault.
func TestGuardNilDeref(t *testing.T) {
	var p *int64
	var r any
	var err error
	func() {
		defer func() { r = recover() }()
		err = Guard(func() { *p = 1 })
	}()
	if sigbusWithoutAddr() {
		t.Logf("this platform reports no SIGBUS address (%s): a nil dereference is ErrFault", or(emulator.Detected(), "not known to be emulated"))
		if !errors.Is(err, ErrFault) || r != nil {
			t.Fatalf("Guard = %v, panic %v; want ErrFault", err, r)
		}
		return
	}
	if err != nil || !isNilDeref(r) {
		t.Fatalf("Guard = %v, panic %v; want the runtime's nil dereference panic", err, r)
	}
}

// TestGuardOtherPanics: panics that are not memory faults pass through.
func TestGuardOtherPanics(t *testing.T) {
	var idx = 3
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"value", func() { panic("boom") }},
		{"index", func() { _ = make([]byte, 2)[idx] }},
		{"divide", func() { _ = 1 / (idx - 3) }},
	} {
		var r any
		func() {
			defer func() { r = recover() }()
			Guard(c.f)
		}()
		if r == nil {
			t.Errorf("%s: Guard swallowed the panic", c.name)
		}
	}
}

// TestSigbusProbe: real Linux reports a SIGBUS's address, so Guard's probe
// must say so natively; under an emulator it only logs what it found.
func TestSigbusProbe(t *testing.T) {
	lost := sigbusWithoutAddr()
	if e := emulator.Detected(); e != "" {
		t.Logf("emulated (%s): SIGBUS without address: %v", e, lost)
		return
	}
	if lost {
		t.Fatal("a SIGBUS past the end of a file came without its address on what looks like real hardware; if this is an emulator, set IPCKIT_EMULATED")
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
