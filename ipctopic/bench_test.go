//go:build linux

package ipctopic

import (
	"sync"
	"testing"
)

// BenchmarkFanout: one publisher and 3 subscriber goroutines on a heap
// topic, 64-byte messages; ns/op is per message published (and received 3
// times).
func BenchmarkFanout(b *testing.B) {
	tp := heapTopic(b, &Options{Slots: 1024, MaxMsg: 64, Subscribers: 3})
	ctx := b.Context()
	var subs []*Subscriber
	for range 3 {
		subs = append(subs, subscribe(b, tp))
	}
	b.ReportAllocs()
	var wg sync.WaitGroup
	n := b.N
	for _, s := range subs {
		wg.Go(func() {
			var sink [64]byte
			for range n {
				if err := s.Read(ctx, func(m []byte) error { copy(sink[:], m); return nil }); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	msg := make([]byte, 64)
	b.ResetTimer()
	for range n {
		if err := tp.Publish(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
}
