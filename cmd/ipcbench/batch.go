package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/spawn"
)

// The batch and zero-copy figures: queue_64B_batch_msgs_per_s (PutBatch of
// batchLen messages in a producer process, Read of up to batchLen in this
// one, beside a buffered channel between goroutines) and the 64 KiB
// figure's queue side (Reserve, one copy into the ring, Commit; Read in
// place), in queue.go's metric.

const batchLen = 32

// produceBatch writes N messages of Size bytes, batchLen at a time with
// PutBatch, each stamped with its sequence number.
var produceBatch = spawn.Register("ipcbench.produceBatch", func(ctx context.Context, a streamArg) error {
	defer a.Q.Close()
	bufs := make([][]byte, batchLen)
	for i := range bufs {
		bufs[i] = make([]byte, a.Size)
	}
	for i := 0; i < a.N; i += batchLen {
		b := bufs[:min(batchLen, a.N-i)]
		for j, m := range b {
			binary.LittleEndian.PutUint64(m, uint64(i+j))
		}
		if _, err := a.Q.PutBatch(ctx, b); err != nil {
			return err
		}
	}
	return nil
})

// produceClaim writes N messages of Size bytes, each with Reserve, one
// copy of a source buffer (stamped with its sequence number) into the
// claim, and Commit.
var produceClaim = spawn.Register("ipcbench.produceClaim", func(ctx context.Context, a streamArg) error {
	defer a.Q.Close()
	src := make([]byte, a.Size)
	for i := range src {
		src[i] = byte(i)
	}
	for i := range a.N {
		binary.LittleEndian.PutUint64(src, uint64(i))
		cl, err := a.Q.Reserve(ctx, a.Size)
		if err != nil {
			return err
		}
		copy(cl.Bytes(), src)
		if err := cl.Commit(); err != nil {
			return err
		}
	}
	return nil
})

// readStream receives n messages of size bytes from a child started by
// child through a queue of capacity bytes, with Read of up to batchLen in
// place (checking each message's sequence number), and returns the time
// from the first message to the last.
func readStream(n, size, capacity int, child *spawn.Func[streamArg]) (time.Duration, error) {
	q, err := ipcqueue.New(capacity, &ipcqueue.Options{MaxMsg: size})
	if err != nil {
		return 0, err
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := spawn.Start(ctx, child, streamArg{N: n, Size: size, Q: q}, nil)
	if err != nil {
		return 0, err
	}
	next := uint64(0)
	check := func(m []byte) error {
		if len(m) != size || binary.LittleEndian.Uint64(m) != next {
			return fmt.Errorf("message %d: %d bytes, stamped %d", next, len(m), binary.LittleEndian.Uint64(m))
		}
		next++
		return nil
	}
	var t0 time.Time
	for next < uint64(n) && err == nil {
		_, err = q.Read(ctx, batchLen, check)
		if t0.IsZero() {
			t0 = time.Now() // the first Read starts the clock
		}
	}
	d := time.Since(t0)
	if err != nil {
		cancel()
	}
	if werr := p.Wait(); err == nil {
		err = werr
	}
	return d, err
}

// batchRate is queue_64B_batch_msgs_per_s's figure, in messages per second
// (the messages of the first Read are not timed: at most batchLen).
func batchRate(cfg *config) (float64, error) {
	n := streamCount(cfg, msgSize)
	d, err := readStream(n, msgSize, 1024*msgSize, produceBatch)
	return rate(n-batchLen, d), err
}

// claimBulk streams bulkSize messages by Reserve+Commit and Read, as many
// as take cfg.target, and returns how many it timed and for how long.
func claimBulk(cfg *config) (int, time.Duration, error) {
	n, d, err := untilTarget(cfg, streamCount(cfg, bulkSize), func(n int) (time.Duration, error) {
		return readStream(n, bulkSize, bulkRing, produceClaim)
	})
	return n - 1, d, err // the first message starts the clock
}

func batchMetric() metric {
	return metric{
		name: "queue_64B_batch_msgs_per_s", unit: "M msgs/s", higher: true,
		ours: side{"ipcqueue", func(cfg *config) (float64, error) {
			m, err := batchRate(cfg)
			return m / 1e6, err
		}},
		peers: []side{{"chan_buffered", func(cfg *config) (float64, error) {
			m, err := chanRate(cfg)
			return m / 1e6, err
		}}},
	}
}
