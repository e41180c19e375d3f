//go:build linux

package shmfile

import (
	"runtime/debug"
	"testing"
)

// Two mappings of one file share memory; Unmap ends one, Retire the other,
// after which its addresses fault instead of reaching other memory.
func TestMapUnmapRetire(t *testing.T) {
	f, err := CreateAnonymous("shmfile-test", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := Map(f, 4096)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Map(f, 4096)
	if err != nil {
		t.Fatal(err)
	}
	a[100] = 42
	if b[100] != 42 {
		t.Fatal("two mappings of one file do not share memory")
	}
	if err := Unmap(a); err != nil {
		t.Fatal(err)
	}
	if err := Retire(b); err != nil {
		t.Fatal(err)
	}
	var sink byte
	if !faults(func() { sink = b[100] }) {
		t.Fatalf("a retired mapping can still be read (%d)", sink)
	}
	if err := Unmap(make([]byte, 4096)); err == nil {
		t.Fatal("Unmap of memory that Map did not return succeeded")
	}
}

func faults(f func()) (faulted bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() { faulted = recover() != nil }()
	f()
	return false
}
