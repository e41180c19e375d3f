//go:build linux

package shm

import "testing"

// BenchmarkAdd compares an uncontended Add on a narrow value (a CAS loop
// on its word) with one on an Int32 (one atomic add).
func BenchmarkAdd(b *testing.B) {
	seg, _ := NewHeap(8)
	b.Run("Int32", func(b *testing.B) {
		v, _ := Int32At(seg, 4)
		for b.Loop() {
			v.Add(1)
		}
	})
	b.Run("Int8", func(b *testing.B) {
		v, _ := Int8At(seg, 1)
		for b.Loop() {
			v.Add(1)
		}
	})
	b.Run("Uint16", func(b *testing.B) {
		v, _ := Uint16At(seg, 2)
		for b.Loop() {
			v.Add(1)
		}
	})
}
