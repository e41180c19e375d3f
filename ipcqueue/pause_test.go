package ipcqueue

import "testing"

// BenchmarkPause measures the spin-wait hint that spin uses between polls.
func BenchmarkPause(b *testing.B) {
	for b.Loop() {
		procyield(1)
	}
}
