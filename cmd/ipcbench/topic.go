package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ipckit/ipckit/ipctopic"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// Publish/subscribe (issue 17): a topic's fan-out to subscriber processes
// beside goroutines fanning out over channels, and a round trip through two
// topics beside the queue's.

// fanout is how many subscribers the throughput figure feeds.
const fanout = 3

// topicSlots is the ring of the figures' topics: as many messages as the
// queue figure's ring holds.
const topicSlots = 1024

func topicMetrics() []metric {
	msgs := func(m float64, err error) (float64, error) { return m / 1e6, err }
	return []metric{
		{
			name: "topic_64B_msgs_per_s", unit: "M msgs/s", higher: true,
			ours: side{"ipctopic", func(cfg *config) (float64, error) { return msgs(topicRate(cfg)) }},
			peers: []side{
				{"chan_fanout", func(cfg *config) (float64, error) { return msgs(chanFanoutRate(cfg)) }},
			},
		},
		{
			name: "topic_rtt_p50_spin", unit: "us",
			ours: side{"ipctopic", func(cfg *config) (float64, error) { return topicRTT(cfg, 0.50) }},
			peers: []side{{"ipcqueue", func(cfg *config) (float64, error) {
				return queueRTT(cfg, 0.50, 0)
			}}},
		},
	}
}

// topicSubArg asks a child to subscribe to T, receive N messages, and add 1
// to Done.
type topicSubArg struct {
	T    *ipctopic.Topic
	N    int
	Done *shm.Int64
}

var topicSub = spawn.Register("ipcbench.topicsub", func(ctx context.Context, a topicSubArg) error {
	defer a.T.Close()
	defer a.Done.Close()
	s, err := a.T.Subscribe(ctx)
	if err != nil {
		return err
	}
	var sink [msgSize]byte
	for range a.N {
		if err := s.Read(ctx, func(m []byte) error { copy(sink[:], m); return nil }); err != nil {
			return err
		}
	}
	a.Done.Add(1)
	return nil
})

// topicRate publishes 64-byte messages from this process to fanout
// subscriber processes, each receiving all of them, and returns messages
// per second: from the first publish until the last subscriber has the
// last message.
func topicRate(cfg *config) (float64, error) {
	n := streamCount(cfg, msgSize)
	t, err := ipctopic.New(&ipctopic.Options{Slots: topicSlots, MaxMsg: msgSize, Subscribers: fanout})
	if err != nil {
		return 0, err
	}
	defer t.Close()
	done, err := shm.NewInt64()
	if err != nil {
		return 0, err
	}
	defer done.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var kids []*spawn.Process
	wait := func() error {
		var errs []error
		for _, p := range kids {
			errs = append(errs, p.Wait())
		}
		return errors.Join(errs...)
	}
	for range fanout {
		p, err := spawn.Start(ctx, topicSub, topicSubArg{T: t, N: n, Done: done}, nil)
		if err != nil {
			cancel()
			return 0, errors.Join(err, wait())
		}
		kids = append(kids, p)
	}
	for t.Stats().Subscribers < fanout {
		time.Sleep(100 * time.Microsecond)
	}
	msg := make([]byte, msgSize)
	start := time.Now()
	for i := range n {
		msg[0] = byte(i)
		if err := t.Publish(ctx, msg); err != nil {
			cancel()
			return 0, errors.Join(err, wait())
		}
	}
	for done.Load() < fanout {
		time.Sleep(20 * time.Microsecond)
	}
	d := time.Since(start)
	return rate(n, d), wait()
}

// chanFanoutRate is the in-process peer: one goroutine sends each message
// to fanout buffered channels of 1024 [64]byte, one goroutine reads each;
// messages per second until every reader has the last.
func chanFanoutRate(cfg *config) (float64, error) {
	n := streamCount(cfg, msgSize)
	chans := make([]chan [msgSize]byte, fanout)
	for i := range chans {
		chans[i] = make(chan [msgSize]byte, topicSlots)
	}
	var wg sync.WaitGroup
	var ready sync.WaitGroup
	ready.Add(fanout)
	for _, ch := range chans {
		wg.Go(func() {
			var sink byte
			ready.Done()
			for range n {
				m := <-ch
				sink ^= m[0]
			}
			_ = sink
		})
	}
	ready.Wait()
	start := time.Now()
	var m [msgSize]byte
	for i := range n {
		m[0] = byte(i)
		for _, ch := range chans {
			ch <- m
		}
	}
	wg.Wait()
	return rate(n, time.Since(start)), nil
}

// topicEchoArg asks a child to subscribe to In and publish every message
// it gets on Out, until a message of length 1.
type topicEchoArg struct {
	In, Out *ipctopic.Topic
}

var topicEcho = spawn.Register("ipcbench.topicecho", func(ctx context.Context, a topicEchoArg) error {
	defer a.In.Close()
	defer a.Out.Close()
	s, err := a.In.Subscribe(ctx)
	if err != nil {
		return err
	}
	for {
		last := false
		err := s.Read(ctx, func(m []byte) error {
			last = len(m) == 1
			if last {
				return nil
			}
			return a.Out.Publish(ctx, m)
		})
		if err != nil || last {
			return err
		}
	}
})

// topicRTT measures round trips to an echo child over two topics, both
// sides spinning with the default budget, and returns percentile p in
// microseconds.
func topicRTT(cfg *config, p float64) (float64, error) {
	opts := &ipctopic.Options{Slots: 64, MaxMsg: msgSize, Subscribers: 1}
	ping, err := ipctopic.New(opts)
	if err != nil {
		return 0, err
	}
	defer ping.Close()
	back, err := ipctopic.New(opts)
	if err != nil {
		return 0, err
	}
	defer back.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	replies, err := back.Subscribe(ctx)
	if err != nil {
		return 0, err
	}
	child, err := spawn.Start(ctx, topicEcho, topicEchoArg{In: ping, Out: back}, nil)
	if err != nil {
		return 0, err
	}
	for ping.Stats().Subscribers < 1 {
		time.Sleep(100 * time.Microsecond)
	}
	v, err := pingPong(cfg, p,
		func(m []byte) error { return ping.Publish(ctx, m) },
		func(m []byte) error {
			return replies.Read(ctx, func(r []byte) error {
				if len(r) != len(m) {
					return fmt.Errorf("echo of %d bytes, want %d", len(r), len(m))
				}
				copy(m, r)
				return nil
			})
		})
	if perr := ping.Publish(ctx, stop); err == nil {
		err = perr
	}
	if werr := child.Wait(); err == nil {
		err = werr
	}
	return v, err
}
