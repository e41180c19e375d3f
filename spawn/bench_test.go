//go:build linux

package spawn_test

import (
	"context"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/spawn"
)

// BenchmarkStartWait compares Start+Wait of a function that returns at once
// with its peer, a raw os/exec re-run of the same binary that exits at once
// (a helperproc helper). Both children run the test binary's package
// initialisation before reaching their Main.
func BenchmarkStartWait(b *testing.B) {
	ctx := context.Background()
	b.Run("spawn", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := spawn.Run(ctx, nop, struct{}{}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("exec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := helperproc.Command(b, "exit").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Both, alternately, so that the machine's drift hits them alike; reports
	// spawn's time over exec's.
	b.Run("ratio", func(b *testing.B) {
		var ts, te time.Duration
		for b.Loop() {
			t0 := time.Now()
			if err := spawn.Run(ctx, nop, struct{}{}, nil); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := helperproc.Command(b, "exit").Run(); err != nil {
				b.Fatal(err)
			}
			ts += t1.Sub(t0)
			te += time.Since(t1)
		}
		b.ReportMetric(float64(ts)/float64(te), "spawn/exec")
	})
}
