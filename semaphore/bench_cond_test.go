//go:build linux

package semaphore

import (
	"testing"
)

// BenchmarkConditionPingPong: two goroutines take turns through one
// Condition, each Notify waking the other's Wait: a round trip is two
// Wait/Notify hand-offs.
func BenchmarkConditionPingPong(b *testing.B) {
	c, err := NewCondition()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	turn := 0 // guarded by c
	done := make(chan error, 1)
	n := b.N
	go func() {
		c.Lock()
		defer c.Unlock()
		for i := range n {
			if err := c.WaitFor(b.Context(), func() bool { return turn == 2*i+1 }); err != nil {
				done <- err
				return
			}
			turn++
			c.Notify(1)
		}
		done <- nil
	}()
	b.ReportAllocs()
	c.Lock()
	b.ResetTimer()
	for i := range n {
		turn++
		c.Notify(1)
		if err := c.WaitFor(b.Context(), func() bool { return turn == 2*i+2 }); err != nil {
			b.Fatal(err)
		}
	}
	c.Unlock()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
