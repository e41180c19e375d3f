//go:build linux

package ipcmap

import (
	"fmt"
	"testing"
)

// benchMap returns an anonymous map of 1024 16-byte keys with 64-byte
// values (ipcbench's map figures), and the keys.
func benchMap(b *testing.B) (*Map, [][]byte) {
	m, err := New(&Options{Entries: 1024, Bytes: 1024 * 128})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	keys := make([][]byte, 1024)
	val := make([]byte, 64)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%012d", i)
		if err := m.Set(b.Context(), keys[i], val); err != nil {
			b.Fatal(err)
		}
	}
	return m, keys
}

func BenchmarkGet(b *testing.B) {
	m, keys := benchMap(b)
	b.ReportAllocs()
	buf := make([]byte, 0, 64)
	i := 0
	for b.Loop() {
		buf, _, _ = m.AppendValue(buf[:0], keys[i%len(keys)])
		i += 7
	}
}

func BenchmarkSet(b *testing.B) {
	m, keys := benchMap(b)
	val := make([]byte, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := m.Set(b.Context(), keys[i%len(keys)], val); err != nil {
			b.Fatal(err)
		}
		i += 7
	}
}
