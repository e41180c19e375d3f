package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/spawn"
)

const msgSize = 64

// streamCount is how many messages one throughput round moves.
func streamCount(cfg *config, size int) int {
	n := 2_000_000
	if cfg.quick {
		n = 500_000
	}
	if size > msgSize {
		n = n * msgSize / size
	}
	return n
}

// rate returns messages per second for n messages in d.
func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// receive starts a producer child with start, reads n messages of size
// bytes with read, and returns the time from the first message to the
// last (n-1 messages), so that the child's start-up is left out.
func receive(n, size int, start func(context.Context) (*spawn.Process, error), read func(p *spawn.Process, buf []byte) error) (time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := start(ctx)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, size)
	var t0 time.Time
	for i := range n {
		if err = read(p, buf); err != nil {
			break
		}
		if i == 0 {
			t0 = time.Now()
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

// receiveStream is receive with the produce child writing arg.
func receiveStream(arg streamArg, opts *spawn.Options, read func(buf []byte) error) (time.Duration, error) {
	return receive(arg.N, arg.Size, func(ctx context.Context) (*spawn.Process, error) {
		return spawn.Start(ctx, produce, arg, opts)
	}, func(_ *spawn.Process, buf []byte) error { return read(buf) })
}

// queueRate measures the queue with a producer process and this process
// as the consumer, in messages per second.
func queueRate(cfg *config, size, capacity int) (float64, error) {
	n := streamCount(cfg, size)
	d, err := queueStream(n, size, capacity)
	return rate(n-1, d), err
}

// queueStream is receive through a queue of capacity bytes, with a
// producer process and this process as the consumer.
func queueStream(n, size, capacity int) (time.Duration, error) {
	q, err := ipcqueue.New(capacity, &ipcqueue.Options{MaxMsg: size})
	if err != nil {
		return 0, err
	}
	defer q.Close()
	ctx := context.Background()
	return receiveStream(streamArg{N: n, Size: size, Q: q}, nil, func(buf []byte) error {
		n, err := q.GetInto(ctx, buf)
		if err == nil && n != len(buf) {
			err = fmt.Errorf("got %d bytes, want %d", n, len(buf))
		}
		return err
	})
}

// fileRate measures a pipe or socket whose write end the child gets as an
// option and whose read end is r.
func fileRate(cfg *config, r *os.File, opts *spawn.Options, socket bool) (float64, error) {
	arg := streamArg{N: streamCount(cfg, msgSize), Size: msgSize, Socket: socket}
	d, err := receiveStream(arg, opts, func(buf []byte) error {
		_, err := io.ReadFull(r, buf)
		return err
	})
	return rate(arg.N-1, d), err
}

func queueMetrics() []metric {
	msgs := func(m float64, err error) (float64, error) { return m / 1e6, err }
	return []metric{
		{
			name: "queue_64B_msgs_per_s", unit: "M msgs/s", higher: true,
			ours: side{"ipcqueue", func(cfg *config) (float64, error) {
				return msgs(queueRate(cfg, msgSize, 1024*msgSize))
			}},
			peers: []side{
				{"chan_buffered", func(cfg *config) (float64, error) { return msgs(chanRate(cfg)) }},
				{"pipe", func(cfg *config) (float64, error) {
					r, w, err := os.Pipe()
					if err != nil {
						return 0, err
					}
					defer r.Close()
					defer w.Close()
					return msgs(fileRate(cfg, r, &spawn.Options{Stdout: w}, false))
				}},
				{"raw_ring_bare", func(cfg *config) (float64, error) { return msgs(rawRate(cfg, rawBare)) }},
				{"raw_ring_lock", func(cfg *config) (float64, error) { return msgs(rawRate(cfg, rawLockOnly)) }},
				{"raw_ring_lock_add", func(cfg *config) (float64, error) { return msgs(rawRate(cfg, rawLockAdd)) }},
				{"uds_seqpacket", func(cfg *config) (float64, error) {
					a, b, err := socketPair()
					if err != nil {
						return 0, err
					}
					defer a.Close()
					defer b.Close()
					return msgs(fileRate(cfg, a, &spawn.Options{Stdin: b}, true))
				}},
			},
		},
		rttMetric("queue_rtt_p50_spin", 0.50, 0, chanRTT),
		rttMetric("queue_rtt_p99_spin", 0.99, 0, chanRTT),
		rttMetric("queue_rtt_p50_block", 0.50, -1, socketRTT),
		rttMetric("queue_rtt_p99_block", 0.99, -1, socketRTT),
		{
			name: "queue_64KiB_MB_per_s", unit: "MB/s", higher: true,
			// Reserve, one copy into the ring, Commit; Read in place.
			ours:  side{"ipcqueue", func(cfg *config) (float64, error) { return bulkRate(claimBulk(cfg)) }},
			peers: []side{{"memcpy", func(cfg *config) (float64, error) { return bulkRate(memcpyBulk(cfg)) }}},
		},
	}
}

// chanRate is the in-process peer: two goroutines and a buffered channel of
// 1024 [64]byte.
func chanRate(cfg *config) (float64, error) {
	n := streamCount(cfg, msgSize)
	ch := make(chan [msgSize]byte, 1024)
	go func() {
		var m [msgSize]byte
		for i := range n {
			m[0] = byte(i)
			ch <- m
		}
	}()
	var sink byte
	<-ch
	start := time.Now()
	for range n - 1 {
		m := <-ch
		sink ^= m[0]
	}
	_ = sink
	return rate(n-1, time.Since(start)), nil
}

// The 64 KiB figure moves bulkSize messages through a queue of bulkRing
// bytes from a producer process to this one, beside one core copying
// bulkSize blocks. Both sides run for cfg.target (untilTarget), and both
// walk memory larger than a core's L2 cache (0.5-2 MiB on current server
// cores): the queue its ring, memcpy a source and a destination of
// memcpyRegion bytes each, more than the queue's ring and its two message
// buffers touch.
const (
	bulkSize     = 64 << 10
	bulkRing     = 16 * bulkSize
	memcpyRegion = 4 << 20
)

// queueBulk streams bulkSize messages through a queue, as many as take
// cfg.target, and returns how many it timed and for how long.
func queueBulk(cfg *config) (int, time.Duration, error) {
	n, d, err := untilTarget(cfg, streamCount(cfg, bulkSize), func(n int) (time.Duration, error) {
		return queueStream(n, bulkSize, bulkRing)
	})
	return n - 1, d, err // the first message starts the clock
}

// memcpyBulk copies bulkSize blocks, as many as take cfg.target, and
// returns how many it timed and for how long.
func memcpyBulk(cfg *config) (int, time.Duration, error) {
	src, dst := make([]byte, memcpyRegion), make([]byte, memcpyRegion)
	for i := range src { // fault every page in: an untouched one reads as the one zero page
		src[i] = byte(i)
	}
	copy(dst, src)
	next := 0
	return untilTarget(cfg, 1, func(n int) (time.Duration, error) {
		start := time.Now()
		copyBlocks(dst, src, next, n)
		d := time.Since(start)
		next += n
		return d, nil
	})
}

// copyBlocks copies blocks from to from+n-1 of src to dst, block i being the
// bulkSize bytes at offset i*bulkSize modulo their length.
func copyBlocks(dst, src []byte, from, n int) {
	blocks := len(src) / bulkSize
	for i := from; i < from+n; i++ {
		o := i % blocks * bulkSize
		copy(dst[o:o+bulkSize], src[o:o+bulkSize])
	}
}

// bulkRate is MB/s for blocks of bulkSize bytes in d.
func bulkRate(blocks int, d time.Duration, err error) (float64, error) {
	return float64(blocks) * bulkSize / d.Seconds() / 1e6, err
}
