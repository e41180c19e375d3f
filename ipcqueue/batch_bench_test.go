//go:build linux

package ipcqueue

import "testing"

// BenchmarkPutBatchRead: one goroutine puts batches of 32 64-byte messages
// and reads them back with Read, on a heap queue: the per-message cost of
// the batch paths without any cross-core traffic.
func BenchmarkPutBatchRead(b *testing.B) {
	q := heapQueue(b, 64<<10, nil)
	msgs := newBufs(32, 64)
	fn := func([]byte) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		q.PutBatch(b.Context(), msgs)
		q.Read(b.Context(), 32, fn)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(32*b.N), "ns/msg")
}

// BenchmarkPutGet is the same with one Put and one Get per message.
func BenchmarkPutGetSame(b *testing.B) {
	q := heapQueue(b, 64<<10, nil)
	msg, buf := make([]byte, 64), make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		q.Put(b.Context(), msg)
		q.GetInto(b.Context(), buf)
	}
}
